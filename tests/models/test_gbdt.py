"""The LightGBM family: the C API's one-row fast path equals LightGBM's own batch predict."""

from __future__ import annotations

import numpy as np

from keel.models.gbdt import LightGBMScorer

from reference import reference_booster, reference_data


def test_one_row_at_a_time_equals_the_batch_bit_for_bit() -> None:
    """The reference model has NaNs, zeros and a 12-level categorical feature."""
    booster = reference_booster(trees=120)
    X, _ = reference_data(rows=3000, seed=5)
    scorer = LightGBMScorer.from_bytes(
        LightGBMScorer(booster).to_bytes()
    )  # as a served model is loaded

    one_by_one = np.array([scorer.probability(X[i : i + 1])[0] for i in range(len(X))])
    strided = np.array([scorer.probability(X[i : i + 1, :])[0] for i in range(0, len(X), 7)])

    np.testing.assert_array_equal(one_by_one, booster.predict(X))
    np.testing.assert_array_equal(strided, booster.predict(X[::7]))
    assert np.isnan(X).any() and len(np.unique(one_by_one)) > 1000
