"""Comparing feature tables: exactly, except float sums, which may differ in the last bits."""

from __future__ import annotations

import heapq

import numpy as np
import pandas as pd

from keel.features.online import OnlineFeatures
from keel.features.windows import FeaturePlan

# Sums of non-integer floats depend on the order of additions (DuckDB's segment trees, a
# partition's layout, a stream's arrival order). Every other value must be bit-for-bit equal.
FLOAT_SUM_RTOL = 1e-12


def float_sums(plan: FeaturePlan, float_columns: set[str]) -> set[str]:
    """The features whose value is a sum of non-integer floats."""
    return {
        f.name
        for f in plan.windows
        if f.function in ("sum", "mean", "std") and f.column in float_columns
    }


def assert_same_features(
    expected: dict[str, np.ndarray],
    got: dict[str, np.ndarray],
    plan: FeaturePlan,
    float_columns: set[str],
) -> None:
    """Every feature equal row by row; float sums to a relative 1e-12."""
    assert list(got) == list(expected) == plan.names()
    loose = float_sums(plan, float_columns)
    for name in plan.names():
        a, b = np.asarray(expected[name], dtype=float), np.asarray(got[name], dtype=float)
        if name in loose:
            np.testing.assert_allclose(
                b, a, rtol=FLOAT_SUM_RTOL, atol=FLOAT_SUM_RTOL, equal_nan=True, err_msg=name
            )
        else:
            np.testing.assert_array_equal(b, a, err_msg=name)


def replay(
    frame: pd.DataFrame,
    online: OnlineFeatures,
    *,
    label_delay: pd.Timedelta,
    time_column: str = "tx_time",
    label_column: str = "fraud",
) -> dict[str, np.ndarray]:
    """Score rows in time order; a label arrives ``label_delay`` after its transaction, not before.

    A label is delivered before the first transaction at or after its due time, the latest
    moment a window may read it; so ``label_delay`` must not exceed the shortest delay of a
    window over the label.
    """
    names = online.plan.names()
    out = {name: np.empty(len(frame)) for name in names}
    pending: list[tuple[pd.Timestamp, int, dict]] = []
    label_keys = [online.id_column, *online.plan.groups(), label_column]
    for i, row in enumerate(frame.to_dict("records")):
        while pending and pending[0][0] <= row[time_column]:
            _, _, label = heapq.heappop(pending)
            assert online.update(label) == online.label_groups([label_column])
        values = online.compute_and_record({**row, label_column: None})
        heapq.heappush(
            pending, (row[time_column] + label_delay, i, {k: row[k] for k in label_keys})
        )
        for name in names:
            out[name][i] = values[name]
    return out
