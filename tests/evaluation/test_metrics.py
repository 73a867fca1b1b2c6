"""Tests for keel.evaluation.metrics: naive reference implementations and properties."""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from keel.errors import TrainingError
from keel.evaluation.metrics import (
    binary_metrics,
    expected_calibration_error,
    gains_table,
    ks_statistic,
    pr_points,
    reliability_curve,
    roc_points,
)

SEEDS = [0, 1, 2, 3, 4]


def _random_data(seed: int, tied: bool) -> tuple[np.ndarray, np.ndarray]:
    """Labels correlated with scores; ``tied`` rounds scores to 0.0, 0.1, ..., 1.0 (bin edges)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 400))
    score = rng.integers(0, 11, size=n) / 10 if tied else rng.random(n)
    y = (rng.random(n) < 0.2 + 0.6 * score).astype(int)
    y[0], y[1] = 0, 1  # both classes always present
    return y, score


@pytest.fixture(params=[(seed, tied) for seed in SEEDS for tied in (False, True)])
def data(request: pytest.FixtureRequest) -> tuple[np.ndarray, np.ndarray]:
    return _random_data(*request.param)


# ---- naive references: plain loops over Python lists -------------------------------


def naive_ks(y: np.ndarray, s: np.ndarray) -> float:
    pos = [v for v, t in zip(s, y, strict=True) if t == 1]
    neg = [v for v, t in zip(s, y, strict=True) if t == 0]
    best = 0.0  # threshold above every score: TPR = FPR = 0
    for threshold in set(s.tolist()):
        tpr = sum(v >= threshold for v in pos) / len(pos)
        fpr = sum(v >= threshold for v in neg) / len(neg)
        best = max(best, tpr - fpr)
    return best


def naive_reliability(y: np.ndarray, s: np.ndarray, bins: int) -> list[dict[str, float]]:
    rows = []
    for i in range(bins):
        low, high = i / bins, (i + 1) / bins
        members = [
            k for k in range(len(s)) if low <= s[k] < high or (i == bins - 1 and s[k] == 1.0)
        ]
        if members:
            rows.append(
                {
                    "bin_low": low,
                    "bin_high": high,
                    "mean_predicted": sum(s[k] for k in members) / len(members),
                    "observed_rate": sum(y[k] for k in members) / len(members),
                    "count": len(members),
                }
            )
    return rows


def naive_ece(y: np.ndarray, s: np.ndarray, bins: int) -> float:
    total = 0.0
    for row in naive_reliability(y, s, bins):
        total += row["count"] / len(s) * abs(row["mean_predicted"] - row["observed_rate"])
    return total


def naive_gains(y: np.ndarray, s: np.ndarray, groups: int) -> list[dict[str, float]]:
    order = sorted(range(len(s)), key=lambda k: -s[k])  # Python's sort is stable
    n, total_pos = len(s), sum(y)
    overall = total_pos / n
    rows, start, seen, captured = [], 0, 0, 0
    for g in range(groups):
        size = n // groups + (1 if g < n % groups else 0)
        members = order[start : start + size]
        start += size
        positives = sum(y[k] for k in members)
        seen += size
        captured += positives
        rows.append(
            {
                "group": g + 1,
                "count": size,
                "positives": positives,
                "positive_rate": positives / size,
                "min_score": min(s[k] for k in members),
                "max_score": max(s[k] for k in members),
                "cumulative_population_share": seen / n,
                "cumulative_positive_share": captured / total_pos,
                "lift": (positives / size) / overall,
                "cumulative_lift": (captured / seen) / overall,
            }
        )
    return rows


def assert_rows_match(actual: list[dict[str, float]], expected: list[dict[str, float]]) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=1e-12, abs=1e-12), key


# ---- agreement with the references ---------------------------------------------------


def test_ks_statistic_matches_naive_threshold_scan(data: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = data
    assert ks_statistic(y, s) == pytest.approx(naive_ks(y, s), abs=1e-12)


@pytest.mark.parametrize("bins", [1, 3, 10, 17])
def test_reliability_curve_matches_naive_binning(
    data: tuple[np.ndarray, np.ndarray], bins: int
) -> None:
    y, s = data
    assert_rows_match(reliability_curve(y, s, bins), naive_reliability(y, s, bins))


@pytest.mark.parametrize("bins", [1, 3, 10, 17])
def test_expected_calibration_error_matches_naive_binning(
    data: tuple[np.ndarray, np.ndarray], bins: int
) -> None:
    y, s = data
    assert expected_calibration_error(y, s, bins) == pytest.approx(naive_ece(y, s, bins), abs=1e-12)


@pytest.mark.parametrize("groups", [1, 4, 10, 13])
def test_gains_table_matches_naive_stable_split(
    data: tuple[np.ndarray, np.ndarray], groups: int
) -> None:
    y, s = data
    assert_rows_match(gains_table(y, s, groups), naive_gains(y, s, groups))


def test_binary_metrics_matches_the_individual_metrics(data: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = data
    result = binary_metrics(y, s)
    p = np.clip(s, 1e-15, 1 - 1e-15)
    assert list(result) == [
        "n", "positive_rate", "auc", "gini", "ks",
        "average_precision", "brier", "log_loss", "ece",
    ]  # fmt: skip
    assert all(type(value) is float for value in result.values())
    assert result["n"] == len(y)
    assert result["positive_rate"] == pytest.approx(y.mean())
    assert result["auc"] == pytest.approx(roc_auc_score(y, s))
    assert result["ks"] == pytest.approx(naive_ks(y, s))
    assert result["brier"] == pytest.approx(np.mean((s - y) ** 2))
    assert result["log_loss"] == pytest.approx(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    assert result["ece"] == pytest.approx(naive_ece(y, s, 10))


# ---- worked examples -------------------------------------------------------------------


def test_reliability_curve_puts_one_in_the_last_bin_and_edges_in_the_upper_bin() -> None:
    curve = reliability_curve([0, 1, 1, 0], [0.3, 1.0, 0.95, 0.0], bins=10)
    assert [(row["bin_low"], row["count"]) for row in curve] == [(0.0, 1), (0.3, 1), (0.9, 2)]


def test_gains_table_breaks_ties_by_original_order() -> None:
    # All scores tie, so the groups are the rows in their original order.
    table = gains_table([1, 1, 0, 0, 0, 1], [0.5] * 6, groups=3)
    assert [row["positives"] for row in table] == [2, 0, 1]


def test_binary_metrics_log_loss_stays_finite_for_confident_mistakes() -> None:
    result = binary_metrics([0, 1], [1.0, 0.0])
    # 1 - 1e-15 rounds in float64, so the clipped miss on the high side costs a little more.
    expected = (-math.log(1e-15) - math.log(1 - (1 - 1e-15))) / 2
    assert result["log_loss"] == pytest.approx(expected, rel=1e-12)


def test_ks_statistic_is_zero_for_a_reversed_ranking() -> None:
    assert ks_statistic([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 0.0


def test_roc_and_pr_points_span_the_unit_square() -> None:
    y, s = _random_data(0, tied=False)
    roc, pr = roc_points(y, s), pr_points(y, s)
    assert set(roc) == {"fpr", "tpr"} and set(pr) == {"recall", "precision"}
    assert (roc["fpr"][0], roc["tpr"][0], roc["fpr"][-1], roc["tpr"][-1]) == (0, 0, 1, 1)
    assert max(pr["recall"]) == 1.0 and min(pr["recall"]) == 0.0
    assert len(roc["fpr"]) == len(roc["tpr"]) and len(pr["recall"]) == len(pr["precision"])


# ---- properties ------------------------------------------------------------------------

labelled = st.integers(min_value=2, max_value=60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(lambda y: 0 < sum(y) < n),
        st.lists(
            st.floats(0, 1) | st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]), min_size=n, max_size=n
        ),
    )
)


@settings(max_examples=40, deadline=None)
@given(labelled)
def test_perfect_ranking_gives_auc_one_and_ks_one(case: tuple[list[int], list[float]]) -> None:
    y, _ = case
    score = [0.9 if label else 0.1 for label in y]
    result = binary_metrics(y, score)
    assert result["auc"] == 1.0 and result["ks"] == 1.0 and result["gini"] == 1.0


@settings(max_examples=40, deadline=None)
@given(labelled)
def test_gini_is_two_auc_minus_one_and_ks_within_unit_interval(
    case: tuple[list[int], list[float]],
) -> None:
    result = binary_metrics(*case)
    assert result["gini"] == pytest.approx(2 * result["auc"] - 1)
    assert 0.0 <= result["ks"] <= 1.0
    assert 0.0 <= result["ece"] <= 1.0


@settings(max_examples=40, deadline=None)
@given(labelled, st.integers(min_value=1, max_value=12))
def test_gains_table_counts_sum_to_n_and_gain_ends_at_one(
    case: tuple[list[int], list[float]], groups: int
) -> None:
    y, s = case
    groups = min(groups, len(y))
    table = gains_table(y, s, groups)
    assert sum(row["count"] for row in table) == len(y)
    assert sum(row["positives"] for row in table) == sum(y)
    assert table[-1]["cumulative_positive_share"] == pytest.approx(1.0)
    assert table[-1]["cumulative_population_share"] == pytest.approx(1.0)
    assert table[-1]["cumulative_lift"] == pytest.approx(1.0)
    shares = [row["cumulative_positive_share"] for row in table]
    assert shares == sorted(shares)
    assert all(a["min_score"] >= b["max_score"] for a, b in pairwise(table))


@settings(max_examples=40, deadline=None)
@given(labelled, st.integers(min_value=1, max_value=20))
def test_reliability_counts_sum_to_n(case: tuple[list[int], list[float]], bins: int) -> None:
    curve = reliability_curve(*case, bins=bins)
    assert sum(row["count"] for row in curve) == len(case[0])
    assert all(row["bin_low"] <= row["mean_predicted"] <= row["bin_high"] for row in curve)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=10, max_size=10).filter(any))
def test_ece_of_a_calibrated_binned_predictor_is_zero(repeats: list[int]) -> None:
    # Bin i predicts its centre (2i + 1) / 20 and, in blocks of 20 rows, hits it exactly.
    y: list[int] = []
    score: list[float] = []
    for i, times in enumerate(repeats):
        for _ in range(times):
            y += [1] * (2 * i + 1) + [0] * (20 - (2 * i + 1))
            score += [(2 * i + 1) / 20] * 20
    assert expected_calibration_error(y, score) == pytest.approx(0.0, abs=1e-12)


# ---- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("y", "s", "message"),
    [
        ([1, 1, 1], [0.2, 0.5, 0.9], "only class 1"),
        ([0, 0], [0.2, 0.5], "only class 0"),
        ([0, 1, 1], [0.2, 0.5], "same length, but got 3 and 2"),
        ([], [], "empty"),
        ([0, 1], [0.2, float("nan")], "NaN"),
        ([0, 1], [0.2, 1.5], r"\[0, 1\], but got min=0.2, max=1.5"),
        ([0, 1], [-0.1, 0.5], r"\[0, 1\]"),
        ([0, 2], [0.2, 0.5], r"only 0 and 1, but got \[2.0\]"),
        ([[0, 1]], [[0.2, 0.5]], "must be 1-D"),
        ([0, 1], ["a", "b"], "numeric"),
    ],
)
def test_binary_metrics_rejects_bad_input(y: list, s: list, message: str) -> None:
    with pytest.raises(TrainingError, match=message):
        binary_metrics(y, s)


def test_every_metric_rejects_mismatched_lengths() -> None:
    for metric in (ks_statistic, expected_calibration_error, reliability_curve, gains_table,
                   roc_points, pr_points):  # fmt: skip
        with pytest.raises(TrainingError, match="same length"):
            metric([0, 1, 1], [0.1, 0.2])


def test_calibration_accepts_a_single_class_but_ranking_metrics_do_not() -> None:
    assert expected_calibration_error([1, 1], [1.0, 1.0]) == 0.0
    with pytest.raises(TrainingError, match="only class 1"):
        gains_table([1, 1], [1.0, 1.0])


@pytest.mark.parametrize("bins", [0, -3, 2.5, True])
def test_reliability_curve_rejects_a_bad_bin_count(bins: int) -> None:
    with pytest.raises(TrainingError, match="bins must be a positive integer"):
        reliability_curve([0, 1], [0.2, 0.8], bins=bins)


def test_gains_table_rejects_more_groups_than_rows() -> None:
    with pytest.raises(TrainingError, match=r"groups must be at most the number of rows \(2\)"):
        gains_table([0, 1], [0.2, 0.8], groups=3)


def test_reliability_mean_stays_inside_its_bin_for_repeated_edge_scores() -> None:
    curve = reliability_curve([0] * 6 + [1], [0.1] * 7, bins=10)
    assert curve[0]["bin_low"] <= curve[0]["mean_predicted"] <= curve[0]["bin_high"]
