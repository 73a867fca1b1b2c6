"""Tests for keel.monitoring.estimate: naive O(n^2) references and simulated label draws."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from keel.errors import DataError, SpecError
from keel.evaluation.metrics import binary_metrics
from keel.monitoring.estimate import (
    compare,
    estimate_performance,
    expected_auc,
    expected_average_precision,
    realized_performance,
)


def _naive_expected_auc(p: list[float]) -> float | None:
    numerator = denominator = 0.0
    for i, p_i in enumerate(p):
        for j, p_j in enumerate(p):
            if i != j:
                weight = p_i * (1 - p_j)  # P(i positive, j negative)
                denominator += weight
                numerator += weight * (1.0 if p_i > p_j else 0.5 if p_i == p_j else 0.0)
    return numerator / denominator if denominator > 0 else None


def _naive_expected_ap(p: list[float]) -> float | None:
    """E[sum_i y_i * precision at i's score] / E[positives].

    The precision counts every row tied at or above i's score.
    """
    numerator = 0.0
    for i, p_i in enumerate(p):
        above = [j for j, p_j in enumerate(p) if p_j >= p_i]
        # E[y_i * sum_{j above} y_j] = p_i (for j = i) + sum_{j != i} p_i p_j
        numerator += (p_i + sum(p_i * p[j] for j in above if j != i)) / len(above)
    return numerator / sum(p) if sum(p) > 0 else None


# A few values on purpose: ties within and across the classes' likely scores, and the ends 0 and 1.
tied_probabilities = st.lists(
    st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5, 0.9, 1.0]), min_size=1, max_size=25
)
any_probabilities = st.lists(
    st.floats(0, 1, allow_subnormal=False), min_size=1, max_size=25
)  # the naive oracle underflows on subnormals (5e-324 / 2 == 0)


@given(st.one_of(tied_probabilities, any_probabilities))
def test_expected_auc_sort_equals_naive_double_loop(p: list[float]) -> None:
    got, want = expected_auc(p), _naive_expected_auc(p)
    assert (got is None) == (want is None)
    if want is not None:
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12)


@given(st.one_of(tied_probabilities, any_probabilities))
def test_expected_average_precision_equals_naive_per_row_formula(p: list[float]) -> None:
    got, want = expected_average_precision(p), _naive_expected_ap(p)
    assert (got is None) == (want is None)
    if want is not None:
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_estimates_of_certain_labels_are_the_realized_metrics() -> None:
    # Probabilities 0 and 1 leave nothing random: the estimate is the realized value exactly.
    p = np.array([1.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    y = p.astype(int)
    assert expected_auc(p) == roc_auc_score(y, p) == 1.0
    assert expected_average_precision(p) == average_precision_score(y, p)
    assert expected_auc([0.3]) is None and expected_auc([0.0, 0.0]) is None


def _draws(p: np.ndarray, count: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((count, p.size)) < p).astype(int)


def test_expected_auc_and_ap_match_realized_on_average_over_label_draws() -> None:
    """Labels ~ Bernoulli(p): p is perfectly calibrated, so the estimate matches the realized mean.

    Tolerance: for a ratio R = U / D, E[R] - E[U] / E[D] = -Cov(R, D) / E[D] exactly (as
    E[R D] = E[U]), at most sd(R) sd(D) / E[D] by Cauchy-Schwarz; on top of that bias, the
    mean of K draws strays from E[R] by under 4 sd(R) / sqrt(K) but with probability 6e-5.
    """
    rng = np.random.default_rng(0)
    p = np.round(rng.beta(1.5, 4.0, 1_000), 2)  # rounded: many ties, like isotonic calibration
    k = 200
    labels = _draws(p, k, seed=1)
    positives = labels.sum(axis=1)
    pairs = positives * (p.size - positives)  # the AUC's denominator
    for name, estimate, realized, denominator in [
        ("auc", expected_auc(p), [roc_auc_score(y, p) for y in labels], pairs),
        (
            "ap",
            expected_average_precision(p),
            [average_precision_score(y, p) for y in labels],
            positives,
        ),
    ]:
        values = np.array(realized)
        sd = values.std(ddof=1)
        tolerance = 4 * sd / np.sqrt(k) + sd * denominator.std(ddof=1) / denominator.mean()
        assert abs(values.mean() - estimate) <= tolerance, (
            name,
            values.mean(),
            estimate,
            tolerance,
        )


def test_threshold_metrics_estimate_their_realized_mean() -> None:
    """Positive rate, Brier, precision and accuracy are exact expectations.

    Recall is a ratio (see above).
    """
    rng = np.random.default_rng(2)
    p = rng.beta(2.0, 5.0, 2_000)
    estimate = estimate_performance(p, threshold=0.4)
    labels = _draws(p, 400, seed=3)
    flagged = p >= 0.4
    positives = labels.sum(axis=1)
    realized = {
        "positive_rate": labels.mean(axis=1),
        "brier": ((labels - p) ** 2).mean(axis=1),
        "precision": labels[:, flagged].mean(axis=1),
        "recall": labels[:, flagged].sum(axis=1) / positives,
        "accuracy": (labels == flagged).mean(axis=1),
    }
    for name, values in realized.items():
        sd = values.std(ddof=1)
        bias = sd * positives.std(ddof=1) / positives.mean() if name == "recall" else 0.0
        assert (
            abs(values.mean() - getattr(estimate, name)) <= 4 * sd / np.sqrt(values.size) + bias
        ), name
    one = realized_performance(labels[0], p, threshold=0.4)
    assert (one.precision, one.recall) == pytest.approx(
        (realized["precision"][0], realized["recall"][0])
    )
    assert estimate.predicted_positive_rate == one.predicted_positive_rate == np.mean(flagged)


def test_miscalibrated_probabilities_make_the_estimate_miss() -> None:
    # The same ranking, but the true rates are sqrt(p): the label-free estimate must not match.
    rng = np.random.default_rng(4)
    p = rng.beta(1.5, 4.0, 2_000)
    labels = _draws(np.sqrt(p), 50, seed=5)
    realized = np.mean([roc_auc_score(y, p) for y in labels])
    assert abs(realized - expected_auc(p)) > 0.02


def test_realized_performance_agrees_with_the_validation_metrics() -> None:
    rng = np.random.default_rng(6)
    p = rng.random(500)
    y = (rng.random(500) < p).astype(int)
    got = realized_performance(y, p, threshold=0.5)
    reference = binary_metrics(y, p)
    for name in ("auc", "ks", "average_precision", "brier", "ece", "positive_rate"):
        assert getattr(got, name) == pytest.approx(reference[name], rel=1e-12), name
    flagged = p >= 0.5
    assert got.precision == pytest.approx(y[flagged].mean())
    assert got.recall == pytest.approx(flagged[y == 1].mean())
    assert got.accuracy == pytest.approx(np.mean(flagged == (y == 1)))


def test_a_window_with_one_class_has_no_auc_but_keeps_calibration_metrics() -> None:
    got = realized_performance([0, 0, 0], [0.1, 0.2, 0.7])
    assert (
        got.auc is None and got.ks is None and got.average_precision is None and got.recall is None
    )
    assert got.precision == 0.0 and got.brier == pytest.approx((0.01 + 0.04 + 0.49) / 3)
    assert estimate_performance([0.1, 0.2]).precision is None  # nothing predicted positive


def test_compare_puts_estimate_and_realized_side_by_side_as_json() -> None:
    p = np.array([0.1, 0.4, 0.8, 0.9])
    rows = compare(estimate_performance(p), realized_performance([0, 1, 0, 1], p))
    auc = next(row for row in rows if row["metric"] == "auc")
    assert auc["realized"] == 0.75 and auc["difference"] == pytest.approx(0.75 - expected_auc(p))
    json.dumps(rows, allow_nan=False)
    json.dumps(estimate_performance(p).to_dict(), allow_nan=False)


def test_bad_input_is_refused_naming_it() -> None:
    with pytest.raises(DataError, match=r"must lie in \[0, 1\] without NaN, but got \[1.5\]"):
        expected_auc([0.2, 1.5])
    with pytest.raises(DataError, match="non-empty 1-D array"):
        estimate_performance([])
    with pytest.raises(DataError, match=r"labels must be 0 or 1, but got \[2.0\]"):
        realized_performance([0, 2], [0.1, 0.2])
    with pytest.raises(DataError, match="same length"):
        realized_performance([0, 1, 1], [0.1, 0.2])
    with pytest.raises(SpecError, match=r"threshold must be a number in \[0, 1\]"):
        estimate_performance([0.5], threshold=2)
