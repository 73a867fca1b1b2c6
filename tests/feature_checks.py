"""Comparing feature tables: exactly, except float sums, which may differ in the last bits."""

from __future__ import annotations

import numpy as np

from keel.features.windows import FeaturePlan

# Sums of non-integer floats depend on the order of additions (DuckDB's segment trees, a
# partition's layout, a stream's arrival order). Every other value must be bit-for-bit equal.
FLOAT_SUM_RTOL = 1e-12


def float_sums(plan: FeaturePlan, float_columns: set[str]) -> set[str]:
    """The features whose value is a sum of non-integer floats."""
    return {f.name for f in plan.windows if f.function in ("sum", "mean", "std") and f.column in float_columns}


def assert_same_features(expected: dict[str, np.ndarray], got: dict[str, np.ndarray], plan: FeaturePlan,
                         float_columns: set[str]) -> None:
    """Every feature equal row by row; float sums to a relative 1e-12."""
    assert list(got) == list(expected) == plan.names()
    loose = float_sums(plan, float_columns)
    for name in plan.names():
        a, b = np.asarray(expected[name], dtype=float), np.asarray(got[name], dtype=float)
        if name in loose:
            np.testing.assert_allclose(b, a, rtol=FLOAT_SUM_RTOL, atol=FLOAT_SUM_RTOL, equal_nan=True, err_msg=name)
        else:
            np.testing.assert_array_equal(b, a, err_msg=name)
