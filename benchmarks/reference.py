"""The reference model for explanation benchmarks and tests: 300 trees, 31 leaves, 25 features.

Synthetic but not easy: interactions, a non-monotone term, 5% missing values everywhere
and one categorical feature with 12 levels, so every kind of LightGBM split is exercised.
"""

from __future__ import annotations

import numpy as np

N_FEATURES = 25
CATEGORICAL = 24


def reference_data(rows: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features and a binary label drawn from a known logistic model."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, N_FEATURES))
    X[:, CATEGORICAL] = rng.integers(0, 12, size=rows)
    X[rng.random(X.shape) < 0.05] = np.nan
    filled = np.nan_to_num(X)
    logit = (
        1.5 * filled[:, 0]
        - filled[:, 1]
        + np.sin(2 * filled[:, 2])
        + 0.5 * filled[:, 3] * filled[:, 4]
    )
    logit += (filled[:, CATEGORICAL] % 3 == 0) + 0.3 * filled[:, 5:15].sum(axis=1)
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def reference_booster(trees: int = 300, leaves: int = 31, seed: int = 0):
    """A LightGBM booster trained on :func:`reference_data`."""
    import lightgbm as lgb

    X, y = reference_data(seed=seed)
    params = {
        "objective": "binary",
        "num_leaves": leaves,
        "verbosity": -1,
        "seed": seed,
        "deterministic": True,
        "num_threads": 2,
    }
    return lgb.train(params, lgb.Dataset(X, y, categorical_feature=[CATEGORICAL]), trees)
