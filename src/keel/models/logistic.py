"""The regularized logistic-regression family, stored as JSON coefficients.

Each numeric feature is imputed with its training median, clipped to its training
[0.5%, 99.5%] quantiles, log-transformed when heavy-tailed, and followed by a missing
flag when it had missing values in training (:mod:`keel.models.transforms`); categorical
codes are one-hot encoded; every design column is standardized with training statistics.
All of it is plain numbers in the model file. A file written before the transforms
existed has no ``transforms`` key and scores exactly as it always did (median and
standardization only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit

from keel.errors import IntegrityError
from keel.models.transforms import NumericTransforms, fit_transforms


@dataclass
class LogisticScorer:
    """Scores rows of a preprocessed matrix; learned state lives in the arrays.

    ``transforms`` is ``None`` for a model from before the numeric transforms.
    """

    coef: np.ndarray
    intercept: float
    fill: np.ndarray
    n_categories: dict[int, int]
    center: np.ndarray
    scale: np.ndarray
    transforms: NumericTransforms | None = None

    family = "logistic"
    file_name = "logistic.json"

    def design(self, X: np.ndarray) -> np.ndarray:
        """Impute, transform, flag, one-hot encode and standardize ``X`` into the design."""
        return (
            _expand(X, self.fill, self.n_categories, self.transforms) - self.center
        ) / self.scale

    def feature_widths(self) -> list[int]:
        """Design columns per feature, in feature order (they follow one another)."""
        return _widths(len(self.fill), self.n_categories, self.transforms)

    def margin(self, X: np.ndarray) -> np.ndarray:
        """Log-odds of the positive class.

        A row's value never depends on the other rows scored with it. (A BLAS matrix product
        may round differently by batch size; a row-wise sum does not.)
        """
        return (self.design(X) * self.coef).sum(axis=1) + self.intercept

    def probability(self, X: np.ndarray) -> np.ndarray:
        """Probability of the positive class."""
        return expit(self.margin(X))

    def to_bytes(self) -> bytes:
        """JSON text; floats are written with full round-trip precision."""
        body = {
            "family": self.family,
            "coef": self.coef.tolist(),
            "intercept": float(self.intercept),
            "fill": self.fill.tolist(),
            "n_categories": {str(k): v for k, v in sorted(self.n_categories.items())},
            "center": self.center.tolist(),
            "scale": self.scale.tolist(),
            **({"transforms": self.transforms.to_dict()} if self.transforms else {}),
        }
        return json.dumps(body, indent=1, sort_keys=True).encode("utf-8")

    @classmethod
    def from_bytes(cls, raw: bytes) -> LogisticScorer:
        """Rebuild from :meth:`to_bytes` output (with or without ``transforms``)."""
        try:
            body = json.loads(raw)
            scorer = cls(
                coef=np.asarray(body["coef"], dtype=np.float64),
                intercept=float(body["intercept"]),
                fill=np.asarray(body["fill"], dtype=np.float64),
                n_categories={int(k): int(v) for k, v in body["n_categories"].items()},
                center=np.asarray(body["center"], dtype=np.float64),
                scale=np.asarray(body["scale"], dtype=np.float64),
                transforms=(
                    NumericTransforms.from_dict(body["transforms"])
                    if "transforms" in body
                    else None
                ),
            )
            _check_shapes(scorer)
            return scorer
        except (ValueError, KeyError, TypeError) as err:
            raise IntegrityError(f"{cls.file_name} is not a Keel logistic model: {err}") from err


def _widths(
    n_features: int, n_categories: dict[int, int], transforms: NumericTransforms | None
) -> list[int]:
    return [
        n_categories[j] if j in n_categories else transforms.width(j) if transforms else 1
        for j in range(n_features)
    ]


def _check_shapes(scorer: LogisticScorer) -> None:
    columns = sum(scorer.feature_widths())
    sizes = {len(scorer.coef), len(scorer.center), len(scorer.scale)}
    if sizes != {columns}:
        raise ValueError(
            f"coef, center and scale must each have {columns} entries (the design's columns), "
            f"not {sorted(sizes)}"
        )
    if scorer.transforms is not None and len(scorer.transforms.log) != len(scorer.fill):
        raise ValueError(
            f"transforms cover {len(scorer.transforms.log)} features, fill {len(scorer.fill)}"
        )


def _expand(
    X: np.ndarray,
    fill: np.ndarray,
    n_categories: dict[int, int],
    transforms: NumericTransforms | None,
) -> np.ndarray:
    blocks = []
    for j in range(X.shape[1]):
        column = X[:, j]
        if j in n_categories:
            onehot = np.zeros((len(column), n_categories[j]))
            known = ~np.isnan(column)
            onehot[np.flatnonzero(known), column[known].astype(int)] = 1.0
            blocks.append(onehot)
        elif transforms is None:
            blocks.append(np.where(np.isnan(column), fill[j], column)[:, None])
        else:
            blocks.append(np.column_stack(transforms.apply(j, column, float(fill[j]))))
    return np.hstack(blocks) if blocks else np.empty((len(X), 0))


def fit_logistic(
    X: np.ndarray, y: np.ndarray, *, params: dict[str, Any], n_categories: dict[int, int], seed: int
) -> LogisticScorer:
    """Fit an L2-regularized logistic regression (lbfgs, deterministic) on the standardized
    design; the transforms are learned from these rows only."""
    from sklearn.linear_model import LogisticRegression

    fill = (
        np.nanmedian(np.where(np.isnan(X).all(axis=0), 0.0, X), axis=0)
        if len(X)
        else np.zeros(X.shape[1])
    )
    fill = np.nan_to_num(fill)
    transforms = fit_transforms(X, set(n_categories))
    expanded = _expand(X, fill, n_categories, transforms)
    center = expanded.mean(axis=0)
    scale = expanded.std(axis=0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(
        C=float(params["C"]), max_iter=int(params.get("max_iter", 1000)), random_state=seed
    )
    model.fit((expanded - center) / scale, y)
    return LogisticScorer(
        model.coef_[0].copy(),
        float(model.intercept_[0]),
        fill,
        dict(n_categories),
        center,
        scale,
        transforms,
    )
