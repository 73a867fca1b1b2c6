"""Performance without labels (confidence-based estimation) and with them, side by side.

CBPE, as in NannyML: when the model's probabilities ``p_i`` are calibrated, row ``i`` is a
positive with probability ``p_i``, independently of the others. Every count a metric is built
from (true positives, concordant pairs, ...) then has a known expectation, and a metric that
is a ratio of counts is estimated by the ratio of their expectations:

- AUC: ``sum_{i != j} p_i (1 - p_j) c_ij / sum_{i != j} p_i (1 - p_j)`` with ``c_ij = 1`` when
  ``p_i > p_j`` and 0.5 on ties, in O(n log n) by sorting;
- average precision (scikit-learn's step form over distinct scores): the expected
  ``sum_g positives_g * precision_g`` over expected positives;
- at a threshold (predicted positive when ``p >= threshold``): precision and accuracy are
  exact expectations (their denominators are not random), recall a ratio; Brier is
  ``mean(p (1 - p))`` exactly and the positive rate ``mean(p)``.

A ratio of expectations differs from the expected ratio by ``-Cov(ratio, denominator) /
E[denominator]``, which shrinks like ``1/n``. The estimate is only as good as the calibration
on the new data: a shift in ``P(y | x)`` (concept drift) is invisible to it, which is why it
is compared with the realized value once labels arrive. The KS statistic is not estimated:
the maximum of a noisy curve is biased upwards, so its plug-in would read low.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import average_precision_score, roc_auc_score

from keel.errors import DataError, SpecError
from keel.evaluation.metrics import expected_calibration_error, ks_statistic

_COMPARED = (
    "positive_rate",
    "auc",
    "average_precision",
    "brier",
    "precision",
    "recall",
    "accuracy",
)


@dataclass(frozen=True)
class Performance:
    """Metrics of one window, estimated from probabilities or realized from labels."""

    kind: Literal["estimated", "realized"]
    n: int
    threshold: float
    predicted_positive_rate: float  # share with probability >= threshold (known without labels)
    positive_rate: float
    auc: float | None  # None when undefined (one class, or expected so)
    average_precision: float | None
    brier: float
    precision: float | None  # None when no row is predicted positive
    recall: float | None
    accuracy: float
    ks: float | None = None  # realized only
    ece: float | None = (
        None  # realized only: expected calibration error over ``bins`` equal-width bins
    )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)


def _probabilities(probability: ArrayLike) -> np.ndarray:
    try:
        p = np.asarray(probability, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"probabilities must be numbers in [0, 1]: {exc}") from exc
    if p.ndim != 1 or p.size == 0:
        raise DataError(f"probabilities must be a non-empty 1-D array, but got shape {p.shape}")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        bad = p[np.isnan(p) | (p < 0) | (p > 1)][:5].tolist()
        raise DataError(f"probabilities must lie in [0, 1] without NaN, but got {bad}")
    return p


def _tie_groups(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted probabilities ascending, and the start of each run of equal values."""
    s = np.sort(p, kind="stable")
    starts = np.flatnonzero(np.concatenate([[True], s[1:] != s[:-1]]))
    return s, starts


def expected_auc(probability: ArrayLike) -> float | None:
    """Expected AUC of calibrated probabilities (ratio of expectations, ties count one half)."""
    p = _probabilities(probability)
    s, starts = _tie_groups(p)
    q = 1.0 - s
    group_p = np.add.reduceat(s, starts)
    group_q = np.add.reduceat(q, starts)
    group_pq = np.add.reduceat(s * q, starts)
    q_below = np.concatenate([[0.0], np.cumsum(group_q)[:-1]])
    numerator = np.sum(group_p * q_below) + 0.5 * np.sum(group_p * group_q - group_pq)
    denominator = s.sum() * q.sum() - np.sum(s * q)
    return float(numerator / denominator) if denominator > 0 else None


def expected_average_precision(probability: ArrayLike) -> float | None:
    """Expected average precision of calibrated probabilities.

    A ratio of expectations; ties are handled as in sklearn.
    """
    p = _probabilities(probability)
    s, starts = _tie_groups(p)
    # Walk the groups from the highest score down: P_g expected positives, K_g rows at or above.
    group_p = np.add.reduceat(s, starts)[::-1]
    group_var = np.add.reduceat(s * (1.0 - s), starts)[::-1]
    sizes = np.diff(np.append(starts, s.size))[::-1]
    rows_at_or_above = np.cumsum(sizes)
    p_above = np.concatenate([[0.0], np.cumsum(group_p)[:-1]])
    # E[pos_g * (pos_g + pos_above)] = Var(pos_g) + P_g^2 + P_g * P_above (independent rows).
    numerator = np.sum((group_var + group_p**2 + group_p * p_above) / rows_at_or_above)
    total = s.sum()
    return float(numerator / total) if total > 0 else None


def estimate_performance(probability: ArrayLike, *, threshold: float = 0.5) -> Performance:
    """Label-free estimate of a window's performance from calibrated probabilities (CBPE)."""
    p = _probabilities(probability)
    _check_threshold(threshold)
    flagged = p >= threshold
    tp, fp = p[flagged].sum(), (1.0 - p[flagged]).sum()
    tn = (1.0 - p[~flagged]).sum()
    positives = p.sum()
    return Performance(
        kind="estimated",
        n=int(p.size),
        threshold=float(threshold),
        predicted_positive_rate=float(flagged.mean()),
        positive_rate=float(p.mean()),
        auc=expected_auc(p),
        average_precision=expected_average_precision(p),
        brier=float(np.mean(p * (1.0 - p))),
        precision=float(tp / (tp + fp)) if flagged.any() else None,
        recall=float(tp / positives) if positives > 0 else None,
        accuracy=float((tp + tn) / p.size),
    )


def realized_performance(
    y_true: ArrayLike, probability: ArrayLike, *, threshold: float = 0.5, bins: int = 10
) -> Performance:
    """Realized performance once labels are in: AUC, KS, AP, Brier, ECE and threshold metrics."""
    p = _probabilities(probability)
    _check_threshold(threshold)
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise SpecError(f"bins must be a positive integer, but got {bins!r}")
    try:
        y = np.asarray(y_true, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"labels must be 0 or 1: {exc}") from exc
    if y.shape != p.shape:
        raise DataError(
            f"labels and probabilities must have the same length, but got {y.shape} and {p.shape}"
        )
    if not np.isin(y, (0.0, 1.0)).all():
        raise DataError(
            f"labels must be 0 or 1, but got {np.unique(y[~np.isin(y, (0.0, 1.0))])[:5].tolist()}"
        )
    labels = y.astype(np.int64)
    both = 0 < labels.sum() < labels.size
    flagged = p >= threshold
    tp = int(labels[flagged].sum())
    return Performance(
        kind="realized",
        n=int(p.size),
        threshold=float(threshold),
        predicted_positive_rate=float(flagged.mean()),
        positive_rate=float(labels.mean()),
        auc=float(roc_auc_score(labels, p)) if both else None,
        average_precision=float(average_precision_score(labels, p)) if both else None,
        brier=float(np.mean((p - labels) ** 2)),
        precision=tp / int(flagged.sum()) if flagged.any() else None,
        recall=tp / int(labels.sum()) if labels.any() else None,
        accuracy=float(np.mean(flagged == (labels == 1))),
        ks=ks_statistic(labels, p) if both else None,
        ece=expected_calibration_error(labels, p, bins),
    )


def compare(estimated: Performance, realized: Performance) -> list[dict[str, Any]]:
    """Rows of metric, estimated, realized and realized - estimated.

    The difference is None where either side is missing.
    """
    rows = []
    for name in _COMPARED:
        e, r = getattr(estimated, name), getattr(realized, name)
        rows.append(
            {
                "metric": name,
                "estimated": e,
                "realized": r,
                "difference": None if e is None or r is None else r - e,
            }
        )
    return rows


def _check_threshold(threshold: float) -> None:
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or not 0 <= threshold <= 1
    ):
        raise SpecError(f"threshold must be a number in [0, 1], but got {threshold!r}")
