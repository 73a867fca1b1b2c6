"""Confidence intervals for test metrics: a stratified percentile bootstrap (pure numpy).

Each of ``rounds`` resamples draws the positive rows and the negative rows with replacement,
separately, so every resample keeps the test set's class counts (and both classes); a
metric's interval is the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of its values
over the resamples. A resample is only a count per row, so the rows are sorted by score once
and every metric is a vectorized sum over the resamples: AUC from ranks (the Mann-Whitney
statistic, ties counted half), KS and average precision from cumulative counts, Brier and
log loss as means. The same inputs and seed give the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from keel.errors import TrainingError
from keel.evaluation.metrics import _validate

__all__ = ["DEFAULT_METRICS", "METRICS", "bootstrap_difference", "bootstrap_intervals"]

METRICS = ("auc", "gini", "ks", "average_precision", "brier", "log_loss")
DEFAULT_METRICS = ("auc", "ks", "average_precision", "brier")
_LOG_LOSS_EPS = 1e-15
_DRAWS_PER_BATCH = 1 << 21  # row draws held in memory at once (rounds x rows, in batches of rounds)


class _Scores:
    """One scorer's test scores, sorted once into slots of ascending score, per class.

    Only the scores of positive rows are thresholds that matter (AUC, KS and average
    precision change between them only through how many negatives lie below), so the
    slots are: the negatives below the lowest positive score, the rows tied at that score,
    the negatives between it and the next one, and so on. Every metric on the slots equals
    the metric on the rows.
    """

    def __init__(self, y: np.ndarray, p: np.ndarray) -> None:
        thresholds = np.unique(p[y == 1])
        self.groups = 2 * thresholds.size + 1
        self.group_pos = 2 * np.searchsorted(thresholds, p[y == 1]) + 1
        k = np.searchsorted(thresholds, p[y == 0])
        tied = thresholds[np.minimum(k, thresholds.size - 1)] == p[y == 0]
        self.group_neg = 2 * k + tied
        clipped = np.clip(p, _LOG_LOSS_EPS, 1 - _LOG_LOSS_EPS)
        self.brier_pos, self.brier_neg = (1 - p[y == 1]) ** 2, p[y == 0] ** 2
        self.loss_pos, self.loss_neg = -np.log(clipped[y == 1]), -np.log1p(-clipped[y == 0])

    def statistics(self, pos: np.ndarray, neg: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """Each metric (columns, in ``names`` order) on each resample (rows).

        A resample is given as the drawn row indices per class.
        """
        b, n1, n0 = pos.shape[0], pos.shape[1], neg.shape[1]
        P, N = self._counts(self.group_pos[pos]), self._counts(self.group_neg[neg])
        out: dict[str, np.ndarray] = {}
        if {"auc", "gini"} & set(names):
            below = np.cumsum(N, axis=1) - N  # negatives scored strictly lower than each group
            out["auc"] = (P * (below + 0.5 * N)).sum(axis=1) / (n1 * n0)
            out["gini"] = 2 * out["auc"] - 1
        if {"ks", "average_precision"} & set(names):
            tp, fp = (
                np.cumsum(P[:, ::-1], axis=1),
                np.cumsum(N[:, ::-1], axis=1),
            )  # at or above each threshold
            out["ks"] = np.maximum(0.0, (tp / n1 - fp / n0).max(axis=1))
            precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
            out["average_precision"] = (P[:, ::-1] * precision).sum(axis=1) / n1
        if "brier" in names:
            out["brier"] = (self.brier_pos[pos].sum(axis=1) + self.brier_neg[neg].sum(axis=1)) / (
                n1 + n0
            )
        if "log_loss" in names:
            out["log_loss"] = (self.loss_pos[pos].sum(axis=1) + self.loss_neg[neg].sum(axis=1)) / (
                n1 + n0
            )
        return np.column_stack([out[name] for name in names]).reshape(b, len(names))

    def _counts(self, groups: np.ndarray) -> np.ndarray:
        """How many drawn rows fall in each score group, per resample: shape (resamples, groups)."""
        b = groups.shape[0]
        flat = (groups + self.groups * np.arange(b)[:, None]).ravel()
        return (
            np.bincount(flat, minlength=b * self.groups).reshape(b, self.groups).astype(np.float64)
        )


def _check(metrics: Sequence[str], rounds: int, level: float) -> tuple[str, ...]:
    names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        raise TrainingError(
            f"bootstrap metrics must be among {list(METRICS)}, but got {list(names)}"
        )
    if isinstance(rounds, bool) or not isinstance(rounds, int | np.integer) or rounds < 2:
        raise TrainingError(f"rounds must be an integer of at least 2, but got {rounds!r}")
    if not 0 < level < 1:
        raise TrainingError(f"level must lie strictly between 0 and 1, but got {level!r}")
    return names


def _replicates(
    y: np.ndarray,
    scores: Sequence[_Scores],
    names: Sequence[str],
    rounds: int,
    seed: int,
    combine: Callable[[list[np.ndarray]], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """(point value, values over the resamples) of ``combine`` on each scorer's statistics."""
    n1, n0 = int(y.sum()), int(y.size - y.sum())
    full = [s.statistics(np.arange(n1)[None, :], np.arange(n0)[None, :], names) for s in scores]
    rng = np.random.default_rng(seed)
    batch = max(1, _DRAWS_PER_BATCH // y.size)
    values = []
    for start in range(0, rounds, batch):
        b = min(batch, rounds - start)
        pos, neg = rng.integers(0, n1, size=(b, n1)), rng.integers(0, n0, size=(b, n0))
        values.append(combine([s.statistics(pos, neg, names) for s in scores]))
    return combine(full)[0], np.concatenate(values)


def _intervals(
    names: Sequence[str], point: np.ndarray, values: np.ndarray, level: float
) -> dict[str, dict[str, float]]:
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return {
        name: {"value": float(point[j]), "low": float(low[j]), "high": float(high[j])}
        for j, name in enumerate(names)
    }


def bootstrap_intervals(
    y: ArrayLike,
    p: ArrayLike,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    rounds: int = 1000,
    seed: int,
    level: float = 0.95,
) -> dict[str, dict[str, float]]:
    """Each metric's value on ``(y, p)`` and its stratified percentile-bootstrap interval.

    The interval is at ``level``. Returns ``{name: {"value", "low", "high"}}`` for
    ``metrics`` (among :data:`METRICS`). ``y`` holds 0/1 labels with both classes present,
    ``p`` the scores in ``[0, 1]``.
    """
    names = _check(metrics, rounds, level)
    labels, scores = _validate(y, p)
    point, values = _replicates(
        labels, [_Scores(labels, scores)], names, int(rounds), seed, lambda s: s[0]
    )
    return _intervals(names, point, values, level)


def bootstrap_difference(
    y: ArrayLike,
    p: ArrayLike,
    p_reference: ArrayLike,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    rounds: int = 1000,
    seed: int,
    level: float = 0.95,
) -> dict[str, dict[str, float]]:
    """Metric of ``p`` minus metric of ``p_reference`` on the same rows, with a paired interval.

    The interval is a paired bootstrap one: both scorers are judged on the same resamples
    (the draws :func:`bootstrap_intervals` makes with the same seed), so the interval
    reflects the difference, not two independent errors.
    """
    names = _check(metrics, rounds, level)
    labels, scores = _validate(y, p)
    _, reference = _validate(y, p_reference)
    point, values = _replicates(
        labels,
        [_Scores(labels, scores), _Scores(labels, reference)],
        names,
        int(rounds),
        seed,
        lambda s: s[0] - s[1],
    )
    return _intervals(names, point, values, level)
