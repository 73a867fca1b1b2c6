"""Global explanations: which features move the margin most over many rows, and how.

Pure numbers over :class:`~keel.explain.contributions.Contributions`. Importance is the
mean absolute contribution per feature (in log-odds), so it adds up across features the
way the contributions do. Dependence pairs a feature's value with its contribution on
every row and summarises that in bins: one per value for a categorical or a feature of
few distinct values, quantile bins otherwise, and one bin for missing (or infinite) values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from keel.explain.contributions import Contributions
from keel.models.artifact import KeelModel


@dataclass(frozen=True)
class Importance:
    """One feature's mean |contribution|, its signed mean, and its share of the total."""

    feature: str
    mean_abs: float
    mean: float
    share: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class Dependence:
    """One feature's value and contribution on every row.

    ``categories`` names a categorical's codes.
    """

    feature: str
    values: np.ndarray
    contributions: np.ndarray
    categories: list[str] | None

    def bins(self, max_bins: int = 10) -> list[dict[str, Any]]:
        """Rows and mean contribution per value bin, missing values last.

        See the module docstring.
        """
        present = np.isfinite(self.values)
        values, contributions = self.values[present], self.contributions[present]
        distinct = np.unique(values)
        out = []
        if self.categories is not None or distinct.size <= max_bins:
            for value in distinct:
                rows = values == value
                if self.categories is not None:
                    out.append(_bin(self.categories[int(value)], None, None, contributions[rows]))
                else:
                    out.append(
                        _bin(f"{value:.6g}", float(value), float(value), contributions[rows])
                    )
        else:
            edges = np.unique(np.quantile(values, np.linspace(0, 1, max_bins + 1)))
            index = np.searchsorted(edges[1:-1], values, side="right")
            for i in range(edges.size - 1):
                rows = index == i
                if rows.any():
                    low, high = float(values[rows].min()), float(values[rows].max())
                    label = f"{low:.6g}" if low == high else f"{low:.6g} to {high:.6g}"
                    out.append(_bin(label, low, high, contributions[rows]))
        if not present.all():
            out.append(_bin("missing", None, None, self.contributions[~present]))
        return out


def _bin(
    label: str, low: float | None, high: float | None, contributions: np.ndarray
) -> dict[str, Any]:
    return {
        "label": label,
        "low": low,
        "high": high,
        "rows": int(contributions.size),
        "mean_contribution": float(contributions.mean()),
    }


def importance(contributions: Contributions) -> list[Importance]:
    """Mean |contribution| of every feature over the rows, largest first (ties in feature order)."""
    values = contributions.values
    if values.shape[0] == 0:
        raise ValueError("importance needs at least one row of contributions, but got none.")
    mean_abs = np.abs(values).mean(axis=0)
    total = float(mean_abs.sum())
    order = np.argsort(-mean_abs, kind="stable")
    return [
        Importance(
            contributions.features[j],
            float(mean_abs[j]),
            float(values[:, j].mean()),
            float(mean_abs[j]) / total if total > 0 else 0.0,
        )
        for j in order
    ]


def dependence(
    contributions: Contributions, X: np.ndarray, model: KeelModel, feature: str
) -> Dependence:
    """The value (model matrix column) and contribution of ``feature`` on every row."""
    if feature not in contributions.features:
        raise ValueError(
            f"'{feature}' is not one of the explained features {contributions.features}."
        )
    j = contributions.features.index(feature)
    categories = model.preprocessor.categories_.get(feature)
    return Dependence(
        feature,
        np.asarray(X[:, j], dtype=float),
        contributions.values[:, j],
        list(categories) if categories is not None else None,
    )
