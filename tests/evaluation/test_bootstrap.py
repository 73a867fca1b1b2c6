"""Bootstrap intervals of test metrics: exact point values, seeded, stratified, honest coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from keel.errors import TrainingError
from keel.evaluation.bootstrap import METRICS, bootstrap_difference, bootstrap_intervals
from keel.evaluation.metrics import binary_metrics, ks_statistic


def _binormal(
    n: int, *, seed: int, rate: float = 0.3, shift: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Labels with a fixed share of positives, and their scores.

    A score is logistic(N(0, 1)) for a negative, logistic(N(shift, 1)) for a positive.
    """
    rng = np.random.default_rng(seed)
    n1 = round(n * rate)
    y = np.r_[np.ones(n1, dtype=int), np.zeros(n - n1, dtype=int)]
    margin = rng.normal(0, 1, n) + shift * y
    return y, 1 / (1 + np.exp(-margin))


def test_point_values_equal_the_card_metrics_even_with_ties() -> None:
    y, p = _binormal(3_000, seed=1)
    p = np.round(p, 2)  # many tied scores, across classes
    result = bootstrap_intervals(y, p, metrics=METRICS, rounds=50, seed=0)
    expected = binary_metrics(y, p)
    assert list(result) == list(METRICS)
    for name in METRICS:
        assert result[name]["value"] == pytest.approx(expected[name], abs=1e-12), name


def test_resampled_values_match_a_naive_loop_over_the_same_resamples() -> None:
    y, p = _binormal(300, seed=2)
    p = np.round(p, 2)
    rounds, seed = 200, 11
    rng = np.random.default_rng(
        seed
    )  # the documented draws: positives, then negatives, one row of each per round
    positives, negatives = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    pos = positives[rng.integers(0, positives.size, size=(rounds, positives.size))]
    neg = negatives[rng.integers(0, negatives.size, size=(rounds, negatives.size))]
    naive = {"auc": [], "ks": [], "average_precision": [], "brier": []}
    for i in range(rounds):
        rows = np.r_[pos[i], neg[i]]
        naive["auc"].append(roc_auc_score(y[rows], p[rows]))
        naive["ks"].append(ks_statistic(y[rows], p[rows]))
        naive["average_precision"].append(average_precision_score(y[rows], p[rows]))
        naive["brier"].append(brier_score_loss(y[rows], p[rows]))
    result = bootstrap_intervals(y, p, rounds=rounds, seed=seed)
    for name, values in naive.items():
        low, high = np.quantile(values, [0.025, 0.975])
        assert (result[name]["low"], result[name]["high"]) == pytest.approx(
            (low, high), abs=1e-12
        ), name


def test_same_seed_same_numbers_and_another_seed_other_numbers() -> None:
    y, p = _binormal(2_000, seed=3)
    first = bootstrap_intervals(y, p, rounds=300, seed=42)
    assert bootstrap_intervals(y, p, rounds=300, seed=42) == first
    assert bootstrap_intervals(list(y), list(p), rounds=300, seed=42) == first
    assert bootstrap_intervals(y, p, rounds=300, seed=43)["auc"] != first["auc"]


def test_every_interval_holds_its_point_value() -> None:
    for seed in range(5):
        y, p = _binormal(1_000, seed=seed, rate=0.1 + 0.1 * seed)
        for name, interval in bootstrap_intervals(
            y, p, metrics=METRICS, rounds=400, seed=seed
        ).items():
            assert interval["low"] < interval["value"] < interval["high"], (seed, name, interval)


def test_interval_width_shrinks_as_one_over_the_square_root_of_the_rows() -> None:
    widths = {}
    for n in (500, 8_000):
        y, p = _binormal(n, seed=n)
        result = bootstrap_intervals(y, p, rounds=1_000, seed=0)
        widths[n] = {name: r["high"] - r["low"] for name, r in result.items()}
    for name in widths[500]:
        ratio = widths[500][name] / widths[8_000][name]
        assert 3.0 < ratio < 5.3, (name, ratio)  # sqrt(8000 / 500) = 4


def test_the_95_interval_covers_the_true_auc_about_95_times_in_100() -> None:
    shift = 1.0
    true_auc = 0.5 * (1 + math.erf(shift / 2))  # P(N(shift, 1) > N(0, 1)) = Phi(shift / sqrt 2)
    hits = 0
    for i in range(200):
        y, p = _binormal(300, seed=1_000 + i, rate=1 / 3, shift=shift)
        interval = bootstrap_intervals(y, p, metrics=("auc",), rounds=400, seed=i)["auc"]
        hits += interval["low"] <= true_auc <= interval["high"]
    assert 0.90 <= hits / 200 <= 0.99


def test_every_resample_keeps_both_classes() -> None:
    y = np.r_[
        np.ones(2, dtype=int), np.zeros(198, dtype=int)
    ]  # unstratified, ~13% of resamples would lack positives
    p = np.r_[0.9, 0.2, np.linspace(0.01, 0.8, 198)]
    result = bootstrap_intervals(y, p, metrics=METRICS, rounds=500, seed=0)
    assert all(np.isfinite([r["low"], r["high"]]).all() for r in result.values())
    assert 0 <= result["auc"]["low"] <= result["auc"]["high"] <= 1


def test_a_paired_difference_is_narrower_than_either_interval() -> None:
    y, p = _binormal(2_000, seed=5)
    rng = np.random.default_rng(6)
    other = np.clip(p + rng.normal(0, 0.03, p.size), 0, 1)
    difference = bootstrap_difference(y, p, other, metrics=METRICS, rounds=500, seed=1)
    mine, theirs = (
        bootstrap_intervals(y, q, metrics=METRICS, rounds=500, seed=1) for q in (p, other)
    )
    for name in METRICS:
        assert difference[name]["value"] == pytest.approx(
            mine[name]["value"] - theirs[name]["value"], abs=1e-12
        )
        assert (
            difference[name]["high"] - difference[name]["low"]
            < (mine[name]["high"] - mine[name]["low"]) / 2
        )
    same = bootstrap_difference(y, p, p, rounds=100, seed=1)
    assert all(r == {"value": 0.0, "low": 0.0, "high": 0.0} for r in same.values())


def test_bad_inputs_are_refused_with_the_rule() -> None:
    y, p = _binormal(100, seed=7)
    with pytest.raises(TrainingError, match="holds only class 0"):
        bootstrap_intervals(np.zeros(10), np.linspace(0, 1, 10), seed=0)
    with pytest.raises(TrainingError, match=r"must be among \['auc'.*but got \['accuracy'\]"):
        bootstrap_intervals(y, p, metrics=("accuracy",), seed=0)
    with pytest.raises(TrainingError, match="rounds must be an integer of at least 2, but got 1"):
        bootstrap_intervals(y, p, rounds=1, seed=0)
    with pytest.raises(TrainingError, match="level must lie strictly between 0 and 1, but got 95"):
        bootstrap_intervals(y, p, level=95, seed=0)
    with pytest.raises(TrainingError, match="same length, but got 100 and 99"):
        bootstrap_difference(y, p, p[:-1], seed=0)
