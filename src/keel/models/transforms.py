"""Per-feature numeric transforms for the logistic family, learned from the training rows.

A linear score is only as good as the scale its inputs arrive on. For each numeric
(non-categorical) feature this learns, from the training rows alone:

- a **missing flag**: a 0/1 design column marking rows where the value was missing, for
  every feature that had a missing value in training (so "unknown" gets its own weight
  instead of being scored as the median);
- **winsorizing bounds**: the training 0.5% and 99.5% quantiles, so an outlier cannot
  dominate the score. Where the two coincide (a rare flag: clipping would erase it) the
  feature is left unclipped;
- a **signed log** ``sign(x) * log1p(|x|)`` for heavy-tailed features. A column's tail
  weight is ``max(|skewness|, sqrt(excess kurtosis))`` of its winsorized training values
  (0 for a normal column, about 2.4 for an exponential one); the log applies when the tail
  weight exceeds ``HEAVY_TAIL`` and the log at least halves it. So skewed amounts and
  two-sided heavy tails are logged, and a 0/1 flag (skewed, but a log cannot change its
  shape) is left alone.

Everything is plain numbers (JSON), and applying it is a row-wise map, so a row's design
never depends on the other rows scored with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

LOWER_QUANTILE = 0.005
UPPER_QUANTILE = 0.995
HEAVY_TAIL = 2.0  # tail weight of the winsorized values above which a log is considered
MIN_TAIL_GAIN = 2.0  # the log must divide the tail weight by at least this much


def signed_log(x: np.ndarray) -> np.ndarray:
    """``sign(x) * log1p(|x|)``: monotone, defined for every real, zero at zero."""
    return np.sign(x) * np.log1p(np.abs(x))


def tail_weight(x: np.ndarray) -> float:
    """``max(|skewness|, sqrt(excess kurtosis))`` by the (biased) moment estimators.

    0 for a constant column or one of fewer than 4 values.
    """
    if len(x) < 4:
        return 0.0
    centred = x - x.mean()
    var = float((centred**2).mean())
    if var <= 0.0:
        return 0.0
    skew = float((centred**3).mean()) / var**1.5
    kurtosis = float((centred**4).mean()) / var**2 - 3.0
    return max(abs(skew), float(np.sqrt(max(kurtosis, 0.0))))


@dataclass(frozen=True)
class NumericTransforms:
    """Learned per-feature transforms; entries of categorical features are unused.

    ``lower[j]``/``upper[j]`` are clip bounds (``None``: not clipped), ``log[j]`` says
    whether the signed log applies, and ``flagged`` lists the features that get a missing
    flag column right after their value column.
    """

    lower: list[float | None]
    upper: list[float | None]
    log: list[bool]
    flagged: list[int]

    def apply(self, j: int, column: np.ndarray, fill: float) -> list[np.ndarray]:
        """Feature ``j``'s design columns: its transformed value, then its missing flag."""
        missing = np.isnan(column)
        value = np.where(missing, fill, column)
        low, high = self.lower[j], self.upper[j]
        if low is not None or high is not None:
            value = np.clip(value, low, high)
        if self.log[j]:
            value = signed_log(value)
        if j in self.flagged:
            return [value, missing.astype(np.float64)]
        return [value]

    def width(self, j: int) -> int:
        """How many design columns numeric feature ``j`` has (1, or 2 with a missing flag)."""
        return 2 if j in self.flagged else 1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "lower": list(self.lower),
            "upper": list(self.upper),
            "log": list(self.log),
            "flagged": list(self.flagged),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NumericTransforms:
        """Rebuild from :meth:`to_dict` output."""
        lower = [None if v is None else float(v) for v in data["lower"]]
        upper = [None if v is None else float(v) for v in data["upper"]]
        log = [bool(v) for v in data["log"]]
        if not len(lower) == len(upper) == len(log):
            raise ValueError("transforms 'lower', 'upper' and 'log' must have one entry a feature")
        flagged = sorted(int(j) for j in data["flagged"])
        if any(j < 0 or j >= len(log) for j in flagged):
            raise ValueError(f"transforms 'flagged' names a feature out of range: {flagged}")
        return cls(lower, upper, log, flagged)


def fit_transforms(X: np.ndarray, categorical: set[int]) -> NumericTransforms:
    """Learn each numeric feature's flag, clip bounds and log choice from training rows ``X``."""
    n = X.shape[1]
    lower: list[float | None] = [None] * n
    upper: list[float | None] = [None] * n
    log = [False] * n
    flagged = []
    for j in range(n):
        if j in categorical:
            continue
        column = X[:, j]
        observed = column[~np.isnan(column)]
        if len(observed) < len(column):
            flagged.append(j)
        if not len(observed):
            continue
        low, high = (float(q) for q in np.quantile(observed, [LOWER_QUANTILE, UPPER_QUANTILE]))
        if low < high:
            lower[j], upper[j] = low, high
            observed = np.clip(observed, low, high)
        weight = tail_weight(observed)
        log[j] = weight > HEAVY_TAIL and tail_weight(signed_log(observed)) * MIN_TAIL_GAIN < weight
    return NumericTransforms(lower, upper, log, flagged)
