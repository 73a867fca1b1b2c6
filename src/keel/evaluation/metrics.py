"""Binary-classification metrics as pure functions over numpy arrays.

``y_true`` holds 0/1 labels and ``score`` the predicted probability of class 1, in
``[0, 1]``. Every function checks its inputs and raises
:class:`~keel.errors.TrainingError` naming the problem. Calibration bins are
equal-width on ``[0, 1]`` with edges ``i / bins``; a bin holds ``low <= score < high``
and the last bin also holds ``1.0``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from keel.errors import TrainingError

__all__ = [
    "binary_metrics",
    "expected_calibration_error",
    "gains_table",
    "ks_statistic",
    "pr_points",
    "reliability_curve",
    "roc_points",
]

_LOG_LOSS_EPS = 1e-15


def _validate(
    y_true: ArrayLike, score: ArrayLike, *, both_classes: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Return (labels as int64, scores as float64) or raise TrainingError naming the problem."""
    try:
        y = np.asarray(y_true, dtype=np.float64)
        s = np.asarray(score, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"y_true and score must be numeric arrays: {exc}") from exc
    if y.ndim != 1 or s.ndim != 1:
        raise TrainingError(f"y_true and score must be 1-D, but got shapes {y.shape} and {s.shape}")
    if y.size != s.size:
        raise TrainingError(
            f"y_true and score must have the same length, but got {y.size} and {s.size}"
        )
    if y.size == 0:
        raise TrainingError("y_true and score are empty; metrics need at least one row")
    bad_labels = np.unique(y[(y != 0) & (y != 1)])
    if bad_labels.size:
        raise TrainingError(f"y_true must hold only 0 and 1, but got {bad_labels[:5].tolist()}")
    n_nan = int(np.isnan(s).sum())
    if n_nan:
        raise TrainingError(f"score must not contain NaN, but {n_nan} of {s.size} values are NaN")
    if s.min() < 0 or s.max() > 1:
        raise TrainingError(
            f"score must lie in [0, 1], but got min={float(s.min())}, max={float(s.max())}"
        )
    labels = y.astype(np.int64)
    if both_classes and np.unique(labels).size < 2:
        raise TrainingError(
            f"y_true holds only class {int(labels[0])}; this metric needs both 0 and 1"
        )
    return labels, s


def _check_count(name: str, value: int, upper: int | None = None) -> None:
    """Raise TrainingError unless 1 <= value (<= upper when given)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise TrainingError(f"{name} must be a positive integer, but got {value!r}")
    if upper is not None and value > upper:
        raise TrainingError(f"{name} must be at most the number of rows ({upper}), but got {value}")


def _bin_index(score: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (bin index per score, bin edges) for equal-width bins on [0, 1]."""
    edges = np.arange(bins + 1) / bins
    index = np.searchsorted(edges, score, side="right") - 1
    return np.minimum(index, bins - 1), edges


def ks_statistic(y_true: ArrayLike, score: ArrayLike) -> float:
    """Return the Kolmogorov-Smirnov statistic: the largest TPR - FPR over all thresholds."""
    y, s = _validate(y_true, score)
    order = np.argsort(-s, kind="stable")
    y_sorted, s_sorted = y[order], s[order]
    tpr = np.cumsum(y_sorted) / y_sorted.sum()
    fpr = np.cumsum(1 - y_sorted) / (y_sorted.size - y_sorted.sum())
    # Only the last row of each run of tied scores is a reachable threshold.
    last_of_tie = np.append(s_sorted[1:] != s_sorted[:-1], True)
    return float(max(0.0, np.max(tpr[last_of_tie] - fpr[last_of_tie])))


def reliability_curve(
    y_true: ArrayLike, score: ArrayLike, bins: int = 10
) -> list[dict[str, float]]:
    """Return one row per non-empty equal-width bin: edges, mean score, observed rate, count."""
    _check_count("bins", bins)
    y, s = _validate(y_true, score, both_classes=False)
    index, edges = _bin_index(s, bins)
    counts = np.bincount(index, minlength=bins)
    score_sums = np.bincount(index, weights=s, minlength=bins)
    positive_sums = np.bincount(index, weights=y, minlength=bins)
    return [
        {
            "bin_low": float(edges[i]),
            "bin_high": float(edges[i + 1]),
            # Clipped: a float sum of n equal scores divided by n can land an ulp outside its bin.
            "mean_predicted": float(np.clip(score_sums[i] / counts[i], edges[i], edges[i + 1])),
            "observed_rate": float(positive_sums[i] / counts[i]),
            "count": int(counts[i]),
        }
        for i in np.flatnonzero(counts)
    ]


def expected_calibration_error(y_true: ArrayLike, score: ArrayLike, bins: int = 10) -> float:
    """Return the count-weighted mean |mean score - observed rate| over equal-width bins."""
    curve = reliability_curve(y_true, score, bins)
    n = sum(row["count"] for row in curve)
    return float(
        sum(row["count"] * abs(row["mean_predicted"] - row["observed_rate"]) for row in curve) / n
    )


def gains_table(y_true: ArrayLike, score: ArrayLike, groups: int = 10) -> list[dict[str, float]]:
    """Return the gains/lift table: rows by descending score in near-equal groups, 1 = top."""
    y, s = _validate(y_true, score)
    _check_count("groups", groups, upper=y.size)
    order = np.argsort(-s, kind="stable")
    total_positives = int(y.sum())
    overall_rate = total_positives / y.size
    rows: list[dict[str, float]] = []
    seen = captured = 0
    for number, members in enumerate(np.array_split(order, groups), start=1):
        count, positives = members.size, int(y[members].sum())
        seen += count
        captured += positives
        rate = positives / count
        rows.append(
            {
                "group": number,
                "count": count,
                "positives": positives,
                "positive_rate": rate,
                "min_score": float(s[members].min()),
                "max_score": float(s[members].max()),
                "cumulative_population_share": seen / y.size,
                "cumulative_positive_share": captured / total_positives,
                "lift": rate / overall_rate,
                "cumulative_lift": (captured / seen) / overall_rate,
            }
        )
    return rows


def roc_points(y_true: ArrayLike, score: ArrayLike) -> dict[str, list[float]]:
    """Return the ROC curve as lists of false- and true-positive rates, for plotting."""
    y, s = _validate(y_true, score)
    fpr, tpr, _ = roc_curve(y, s)
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist()}


def pr_points(y_true: ArrayLike, score: ArrayLike) -> dict[str, list[float]]:
    """Return the precision-recall curve as lists of recall and precision, for plotting."""
    y, s = _validate(y_true, score)
    precision, recall, _ = precision_recall_curve(y, s)
    return {"recall": recall.tolist(), "precision": precision.tolist()}


def _log_loss(y: np.ndarray, s: np.ndarray) -> float:
    """Return the mean negative log-likelihood with probabilities clipped away from 0 and 1."""
    p = np.clip(s, _LOG_LOSS_EPS, 1 - _LOG_LOSS_EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def binary_metrics(y_true: ArrayLike, score: ArrayLike) -> dict[str, float]:
    """Return n, positive_rate, auc, gini, ks, average_precision, brier, log_loss and ece."""
    y, s = _validate(y_true, score)
    auc = float(roc_auc_score(y, s))
    return {
        "n": float(y.size),
        "positive_rate": float(y.mean()),
        "auc": auc,
        "gini": 2 * auc - 1,
        "ks": ks_statistic(y, s),
        "average_precision": float(average_precision_score(y, s)),
        "brier": float(brier_score_loss(y, s)),
        "log_loss": _log_loss(y, s),
        "ece": expected_calibration_error(y, s),
    }
