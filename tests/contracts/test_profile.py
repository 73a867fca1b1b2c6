"""keel init's profiler: column profiles, candidates, the starter spec and its YAML."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from keel.contracts.profile import (
    ColumnProfile,
    TableProfile,
    profile_table,
    render_spec_yaml,
    starter_spec,
)
from keel.errors import DataError
from keel.spec import parse_spec


def _loans() -> pd.DataFrame:
    """Eight loans with every kind of column keel init has to recognise."""
    return pd.DataFrame(
        {
            "loan_id": ["L1", "L2", "L3", "L4", "L5", "L6", "L7", "L8"],
            "applied": [
                "2024-01-05",
                "2024-01-09",
                "2024-02-01",
                "2024-02-11",
                "2024-03-03",
                "2024-03-15",
                "2024-04-02",
                None,
            ],
            "income": [
                5e05,
                4.2e05,
                np.nan,
                3e05,
                6e05,
                2.5e05,
                4e05,
                5e05,
            ],  # integral floats from a CSV
            "rate": [0.05, 0.07, 0.061, 0.05, 0.09, 0.1, 0.04, 0.05],
            "grade": ["A", "B", "B", "C", "A", None, "B", "B"],
            "term": np.array([36, 60, 36, 36, 60, 36, 36, 60], dtype="int64"),
            "autopay": [True, False, True, True, False, True, True, True],
            "defaulted": [0, 1, 0, 0, 1, 0, 0, 0],
        }
    )


@pytest.fixture(scope="module")
def profile() -> TableProfile:
    return profile_table(_loans())


def test_profile_maps_each_column_to_a_spec_dtype(profile: TableProfile) -> None:
    dtypes = {c.name: c.dtype for c in profile.columns}
    assert dtypes == {
        "loan_id": "str",
        "applied": "datetime",
        "income": "int",
        "rate": "float",
        "grade": "str",
        "term": "int",
        "autopay": "bool",
        "defaulted": "int",
    }
    assert profile.rows == 8
    assert [c.name for c in profile.columns] == list(_loans().columns)


def test_profile_flags_integral_floats_and_records_their_range(profile: TableProfile) -> None:
    income = profile.column("income")
    assert income == ColumnProfile(
        name="income",
        dtype="int",
        missing_rate=0.125,
        n_unique=6,
        min=250000.0,
        max=600000.0,
        top_values=[500000, 250000, 300000, 400000, 420000, 600000],
        is_integral_float=True,
        distinct_values=[250000, 300000, 400000, 420000, 500000, 600000],
    )
    assert all(type(v) is int for v in income.top_values)
    assert not profile.column("rate").is_integral_float
    assert profile.column("rate").min == 0.04


def test_profile_summarizes_text_and_datetime_columns(profile: TableProfile) -> None:
    grade = profile.column("grade")
    assert (grade.missing_rate, grade.n_unique, grade.top_values) == (0.125, 3, ["B", "A", "C"])
    assert grade.min is None and grade.max is None
    applied = profile.column("applied")
    assert applied.n_unique == 7
    assert applied.top_values[0] == "2024-01-05T00:00:00"


def test_profile_names_id_target_and_time_candidates(profile: TableProfile) -> None:
    assert profile.id_candidates == ["loan_id"]
    assert profile.target_candidates == [
        "defaulted",
        "autopay",
        "term",
    ]  # named first, then from the end
    assert profile.time_candidates == ["applied"]


def test_increasing_integers_are_an_id_candidate_but_repeated_or_plain_names_are_not() -> None:
    df = pd.DataFrame(
        {
            "row": [3, 4, 9, 12],
            "paid": [30, 10, 40, 20],
            "code": ["a", "b", "c", "d"],
            "CustomerID": [7, 2, 5, 1],
            "y": [1, 0, 1, 0],
        }
    )
    assert profile_table(df).id_candidates == ["row", "CustomerID"]


def test_numeric_looking_text_stays_text_and_never_warns() -> None:
    df = pd.DataFrame({"zip": ["02134", "2024", "10001"], "when": ["2024-01-01", "soon", None]})
    profile = profile_table(df)
    assert [c.dtype for c in profile.columns] == ["str", "str"]


def test_nullable_categorical_and_object_columns_get_plain_dtypes() -> None:
    df = pd.DataFrame(
        {
            "n": pd.array([1, None, 3], dtype="Int64"),
            "cat": pd.Categorical(["x", "y", "x"]),
            "flag": [True, None, False],
            "blank": [None, None, None],
            "mixed": [1, "a", 2.5],
        }
    )
    profile = profile_table(df)
    assert [c.dtype for c in profile.columns] == ["int", "str", "bool", "str", "str"]
    assert profile.column("mixed").top_values == ["1", "2.5", "a"]
    assert profile.column("blank").missing_rate == 1.0
    spec = parse_spec(starter_spec(profile, source="t.csv", project="t", target="cat"))
    assert spec.contract.columns["blank"].allowed is None  # nothing observed, nothing to allow
    assert spec.target.positive == "y"


def test_starter_spec_parses_with_expected_contract(profile: TableProfile) -> None:
    raw = starter_spec(profile, source="data/loans.csv", project="loans")
    spec = parse_spec(raw)
    cols = spec.contract.columns
    assert set(cols) == set(_loans().columns)
    assert {n: c.dtype for n, c in cols.items()} == {c.name: c.dtype for c in profile.columns}
    assert cols["grade"].allowed == ["A", "B", "C"] and cols["grade"].nullable
    assert cols["term"].allowed == [36, 60] and (cols["term"].min, cols["term"].max) == (36, 60)
    assert cols["income"].allowed == [250000, 300000, 400000, 420000, 500000, 600000]
    assert (
        cols["loan_id"].unique and cols["loan_id"].allowed is None and not cols["loan_id"].nullable
    )
    assert cols["rate"].allowed is None and cols["rate"].max == 0.1
    assert cols["autopay"].allowed is None
    assert cols["grade"].description == "observed 12.5% missing, 3 distinct"
    assert (spec.data.format, spec.data.id_column, spec.data.time_column, spec.data.duplicates) == (
        "csv",
        "loan_id",
        "applied",
        "drop",
    )
    assert (spec.target.column, spec.target.positive) == ("defaulted", 1)
    assert spec.features.categorical == ["grade"] and spec.features.exclude == []
    assert (spec.split.method, spec.tuning.trials, spec.seed) == ("time", 20, 42)
    assert "keel init" in spec.description


def test_starter_spec_without_time_column_splits_stratified_and_excludes_wide_text() -> None:
    n = 60
    df = pd.DataFrame(
        {
            "note": [f"n{i}" for i in range(n)],
            "city": ["a", "b", "c"] * 20,
            "outcome": ["bad" if i % 4 == 0 else "good" for i in range(n)],
        }
    )
    spec = parse_spec(starter_spec(profile_table(df), source="x.parquet", project="p"))
    assert (spec.split.method, spec.data.time_column, spec.data.id_column) == (
        "stratified",
        None,
        None,
    )
    assert spec.data.format == "parquet"
    assert spec.features.categorical == ["city"] and spec.features.exclude == ["note"]
    assert spec.contract.columns["note"].allowed is None
    assert (spec.target.column, spec.target.positive) == ("outcome", "bad")  # the rarer value


def test_explicit_target_overrides_the_candidates(profile: TableProfile) -> None:
    spec = parse_spec(starter_spec(profile, source="l.csv", project="loans", target="autopay"))
    assert (spec.target.column, spec.target.positive) == ("autopay", True)


def test_render_is_deterministic_and_round_trips(profile: TableProfile) -> None:
    raw = starter_spec(profile, source="data/loans.csv", project="loans")
    text = render_spec_yaml(raw, profile)
    again = render_spec_yaml(
        starter_spec(profile_table(_loans()), source="data/loans.csv", project="loans"),
        profile_table(_loans()),
    )
    assert text == again
    assert text.startswith("# Starter spec generated by `keel init`")
    assert "protected:" in text and "positive" in text and "8 rows" in text
    assert parse_spec(yaml.safe_load(text)) == parse_spec(raw)


def test_no_binary_column_asks_for_a_target() -> None:
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    with pytest.raises(DataError, match=r"columns seen: a, b.*pass --target"):
        starter_spec(profile_table(df), source="d.csv", project="p")


def test_unknown_target_suggests_the_close_column(profile: TableProfile) -> None:
    with pytest.raises(DataError, match=r"'defaultd' is not a column.*Did you mean 'defaulted'\?"):
        starter_spec(profile, source="d.csv", project="p", target="defaultd")


def test_target_with_other_than_two_values_is_refused(profile: TableProfile) -> None:
    message = r"target 'grade' must have exactly 2 distinct values, but has 3: \['B', 'A', 'C'\]"
    with pytest.raises(DataError, match=message):
        starter_spec(profile, source="d.csv", project="p", target="grade")
