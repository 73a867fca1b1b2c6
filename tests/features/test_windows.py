"""Offline window features: a naive reference, point in time, no leakage, and local == Dask."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keel.errors import DataError, SpecError
from keel.features.offline import add_features, compute_features
from keel.features.windows import FeaturePlan
from keel.spec import WindowFeature, parse_spec

from factories import make_transactions, transactions_spec
from feature_checks import assert_same_features

FLOATS = {"amount"}


def _plan(windows: dict | None = None, calendar: dict | None = None) -> FeaturePlan:
    return FeaturePlan.of(parse_spec(transactions_spec(windows=windows, calendar=calendar)))


def _in_window(f: WindowFeature, t_row: int, t_event: int, same_row: bool) -> bool:
    """The documented rule, written out per event: the window ends at the cutoff, time - delay."""
    cutoff = t_row - f.delay_us
    start = cutoff - f.window_us
    if f.boundary == "at_or_before" and f.delay_us == 0:
        return same_row or start < t_event < t_row
    if f.boundary == "at_or_before":
        return start < t_event <= cutoff
    return start < t_event < cutoff


def _aggregate(function: str, values: list) -> float:
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if function == "distinct_count":
        return float(len(set(present)))
    if function == "count":
        return float(len(present))
    if not present or (function == "std" and len(present) < 2):
        return math.nan
    return float(
        {
            "sum": math.fsum,
            "mean": statistics.fmean,
            "std": statistics.stdev,
            "min": min,
            "max": max,
        }[function](present)
    )


def naive_features(frame: pd.DataFrame, plan: FeaturePlan) -> dict[str, np.ndarray]:
    """Every feature by looking at every pair of rows: slow, obviously right."""
    times = frame["tx_time"].dt.as_unit("us").astype("int64").to_numpy()
    rows = frame.to_dict("records")
    out = {}
    for f in plan.windows:
        values = []
        for i, row in enumerate(rows):
            chosen = [
                other
                for j, other in enumerate(rows)
                if other[f.entity] == row[f.entity] and _in_window(f, times[i], times[j], i == j)
            ]
            values.append(
                float(len(chosen))
                if f.column is None
                else _aggregate(f.function, [o[f.column] for o in chosen])
            )
        out[f.name] = np.array(values)
    for name, part in plan.calendar.items():
        hours, days = frame["tx_time"].dt.hour, frame["tx_time"].dt.dayofweek
        out[name] = {"weekend": days >= 5, "night": hours <= 6, "hour": hours, "day_of_week": days}[
            part
        ].to_numpy(float)
    return out


SMALL_WINDOWS = {
    "card": {
        "entity": "card",
        "windows": ["5s", "20s"],
        "aggregations": {
            "nb": {"function": "count"},
            "sum": {"function": "sum", "column": "amount"},
            "avg": {"function": "mean", "column": "amount"},
            "sd": {"function": "std", "column": "amount"},
            "lo": {"function": "min", "column": "amount"},
            "hi": {"function": "max", "column": "amount"},
            "n_amount": {"function": "count", "column": "amount"},
            "terminals": {"function": "distinct_count", "column": "terminal"},
            "cards": {"function": "distinct_count", "column": "card"},
        },
    },
    "card_before": {
        "entity": "card",
        "windows": ["5s"],
        "boundary": "before",
        "aggregations": {
            "nb": {"function": "count"},
            "avg": {"function": "mean", "column": "amount"},
        },
    },
    "terminal": {
        "entity": "terminal",
        "windows": ["10s"],
        "delay": "3s",
        "aggregations": {
            "nb": {"function": "count"},
            "risk": {"function": "mean", "column": "fraud"},
        },
    },
    "terminal_before": {
        "entity": "terminal",
        "windows": ["10s"],
        "delay": "3s",
        "boundary": "before",
        "aggregations": {"risk": {"function": "mean", "column": "fraud"}},
    },
}


@st.composite
def small_tables(draw: st.DrawFn) -> pd.DataFrame:
    """Few rows, entities and seconds: many ties, window edges hit exactly, missing values."""
    n = draw(st.integers(1, 30))
    seconds = sorted(draw(st.lists(st.integers(0, 40), min_size=n, max_size=n)))
    amount = draw(
        st.lists(
            st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)), min_size=n, max_size=n
        )
    )
    return pd.DataFrame(
        {
            "tx_id": np.arange(n),
            "tx_time": pd.Timestamp("2024-03-02 05:59:50") + pd.to_timedelta(seconds, unit="s"),
            "card": draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)),
            "terminal": draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)),
            "amount": pd.array(amount, dtype="Float64").astype(float),
            "channel": draw(st.lists(st.sampled_from(["pos", "web"]), min_size=n, max_size=n)),
            "fraud": draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)),
        }
    )


@settings(max_examples=60, deadline=None)
@given(small_tables())
def test_features_equal_a_naive_reference(frame: pd.DataFrame) -> None:
    plan = _plan(SMALL_WINDOWS)
    assert_same_features(naive_features(frame, plan), compute_features(frame, plan), plan, FLOATS)


@settings(max_examples=40, deadline=None)
@given(small_tables(), st.data())
def test_no_feature_reads_past_its_cutoff(frame: pd.DataFrame, data: st.DataObject) -> None:
    """Rewrite every value and label a row's cutoff excludes: that row's features do not move."""
    plan = _plan(SMALL_WINDOWS)
    i = data.draw(st.integers(0, len(frame) - 1))
    before = compute_features(frame, plan)
    times = frame["tx_time"]
    for group, spec in SMALL_WINDOWS.items():
        delay = pd.Timedelta(spec.get("delay", "0s"))
        cutoff = times[i] - delay
        if spec.get("boundary") == "before" or delay == pd.Timedelta(0):
            hidden = times >= cutoff
        else:
            hidden = times > cutoff
        changed = frame.copy()
        hidden_rows = hidden & (frame.index != i)
        changed.loc[hidden_rows, "amount"] = data.draw(st.floats(-1e6, 1e6))
        if spec["entity"] == "card":
            changed.loc[hidden_rows, "terminal"] = 2
        changed.loc[hidden, "fraud"] = 1 - frame.loc[hidden, "fraud"]  # the row's own label too
        after = compute_features(changed, plan)
        for f in plan.windows:
            if f.group == group:
                np.testing.assert_array_equal(after[f.name][i], before[f.name][i], err_msg=f.name)


@settings(max_examples=30, deadline=None)
@given(small_tables(), st.randoms(use_true_random=False))
def test_row_order_does_not_matter(frame: pd.DataFrame, random) -> None:
    """Rows at the same time come in any order.

    The handbook's daily files differ from its sorted file.
    """
    plan = _plan(SMALL_WINDOWS)
    order = list(range(len(frame)))
    random.shuffle(order)
    shuffled = frame.iloc[order].reset_index(drop=True)
    expected = compute_features(frame, plan)
    got = compute_features(shuffled, plan)
    back = np.argsort(order)
    assert_same_features(expected, {k: v[back] for k, v in got.items()}, plan, FLOATS)


def test_a_target_window_needs_a_delay() -> None:
    windows = {
        "t": {
            "entity": "terminal",
            "windows": ["1d"],
            "aggregations": {"r": {"function": "mean", "column": "fraud"}},
        }
    }
    with pytest.raises(SpecError, match="aggregating the target 'fraud' needs a delay"):
        parse_spec(transactions_spec(windows=windows))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"windows": ["1day"]}, "'1day' is not a duration"),
        ({"windows": ["1d", "1d"]}, "windows repeat"),
        ({"entity": "crad"}, "column 'crad' is not in contract.columns. Did you mean 'card'"),
        (
            {"aggregations": {"x": {"function": "mean", "column": "channel"}}},
            "'mean' needs a number column",
        ),
        ({"aggregations": {"x": {"function": "sum"}}}, "function 'sum' needs a column"),
        ({"aggregations": {"x": {"function": "median", "column": "amount"}}}, "count"),
    ],
)
def test_bad_window_specs_name_the_key(change: dict, message: str) -> None:
    group = {
        "entity": "card",
        "windows": ["1d"],
        "aggregations": {"nb": {"function": "count"}},
        **change,
    }
    with pytest.raises(SpecError, match=message):
        parse_spec(transactions_spec(windows={"card": group}))


def test_feature_names_must_be_new() -> None:
    windows = {
        "card": {"entity": "card", "windows": ["1d"], "aggregations": {"nb": {"function": "count"}}}
    }
    with pytest.raises(SpecError, match="card_nb_1d"):
        parse_spec(transactions_spec(windows=windows, calendar={"card_nb_1d": "weekend"}))


def test_model_features_and_derived_ratios_of_window_features() -> None:
    raw = transactions_spec(
        windows={
            "card": {
                "entity": "card",
                "windows": ["1d", "7d"],
                "aggregations": {"avg": {"function": "mean", "column": "amount"}},
            }
        }
    )
    raw["features"]["derived"] = {"amount_vs_week": "amount / card_avg_7d"}
    spec = parse_spec(raw)
    assert spec.model_features() == [
        "amount",
        "card_avg_1d",
        "card_avg_7d",
        "is_weekend",
        "is_night",
        "amount_vs_week",
    ]
    frame = add_features(make_transactions(300), spec)
    assert list(frame.columns[-4:]) == ["card_avg_1d", "card_avg_7d", "is_weekend", "is_night"]


def test_missing_times_are_refused() -> None:
    frame = make_transactions(50)
    frame.loc[3, "tx_time"] = pd.NaT
    with pytest.raises(DataError, match="'tx_time' has 1 missing value"):
        compute_features(frame, _plan())


def test_local_and_dask_give_the_same_features(dask_engine) -> None:
    """A real LocalCluster with 2 worker processes.

    The rows of each entity are shuffled to one partition.
    """
    frame = make_transactions(20_000, seed=3)
    plan = _plan()
    local = compute_features(frame, plan)
    distributed = compute_features(frame, plan, engine=dask_engine)
    assert dask_engine.workers() == 2
    assert_same_features(local, distributed, plan, FLOATS)
    assert np.nanmax(local["card_nb_7d"]) > 5 and np.nanmax(local["terminal_risk_7d"]) > 0
