"""Per-row contributions to a Keel model's margin (log-odds), per model feature.

LightGBM: exact path-dependent TreeSHAP from our kernel (:mod:`keel.explain.treeshap`).
Logistic: coefficient x (value - reference) per design column, the value being the
column as the model sees it (imputed, clipped, log-transformed, flagged, one-hot) and the
reference its training mean; a feature's columns (its value and missing flag, or its
one-hot columns) are summed back to it, with the widths the scorer reports. Either way
``base + values.sum(axis=1)`` is the model's margin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from keel.explain.treeshap import TreeShap
from keel.models.artifact import KeelModel
from keel.models.logistic import LogisticScorer


@dataclass(frozen=True)
class Contributions:
    """Contributions of each feature to each row's margin, and the margin they start from."""

    features: list[str]
    values: np.ndarray  # (rows, features)
    base: float

    def margin(self) -> np.ndarray:
        """The margin the contributions add up to."""
        return self.base + self.values.sum(axis=1)


class Explainer:
    """Explains one model; the tree kernel is compiled once, at construction."""

    def __init__(self, model: KeelModel) -> None:
        self.model = model
        self._trees = (
            TreeShap.from_model_text(model.scorer.to_bytes().decode("utf-8"))
            if model.family == "lightgbm"
            else None
        )

    def explain(self, frame: pd.DataFrame) -> Contributions:
        """Contributions for the rows of a raw input frame."""
        return self.explain_matrix(self.model.preprocessor.transform(frame))

    def explain_matrix(self, X: np.ndarray) -> Contributions:
        """Contributions for rows of the preprocessed model matrix."""
        features = self.model.features
        if self._trees is not None:
            phi = self._trees.contributions(X)
            return Contributions(features, phi[:, :-1], self._trees.expected_value)
        scorer = self.model.scorer
        assert isinstance(scorer, LogisticScorer)
        return Contributions(
            features,
            _fold(scorer.design(X) * scorer.coef, scorer.feature_widths()),
            scorer.intercept,
        )


def _fold(design: np.ndarray, widths: list[int]) -> np.ndarray:
    """Sum design columns back to their features; feature j owns the next ``widths[j]``.

    A feature with no design column (a categorical never seen in training) contributes 0.
    """
    sizes = np.asarray(widths, dtype=int)
    out = np.zeros((len(design), len(sizes)))
    owned = np.flatnonzero(sizes > 0)
    if len(owned):
        starts = (np.cumsum(sizes) - sizes)[owned]
        out[:, owned] = np.add.reduceat(design, starts, axis=1)
    return out
