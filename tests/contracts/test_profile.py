"""keel init's profiler: column profiles, candidates, the starter spec and its YAML."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from keel.contracts.profile import (
    ColumnProfile,
    TableProfile,
    is_protected_name,
    profile_table,
    render_spec_yaml,
    sentinel_codes,
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
            "note": [f"called on day {i}" for i in range(n)],
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


def test_a_wide_column_of_repeating_levels_is_a_category_but_free_text_is_not() -> None:
    # A merchant with 200 levels, each seen 20 times, carries signal a model can use (the
    # quality benchmark lost 0.07 AUC without it); 4,000 different notes do not.
    rows = 4000
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "merchant": [f"m{i % 200:03d}" for i in range(rows)],
            "note": [f"note {i}" for i in rng.permutation(rows)],
            "mostly_rare": [f"r{i}" if i % 5 else "common" for i in range(rows)],
            "outcome": rng.choice(["bad", "good"], rows),
        }
    )
    profile = profile_table(df)
    shares = {c.name: round(c.frequent_share, 2) for c in profile.columns if c.dtype == "str"}
    assert shares == {"merchant": 1.0, "note": 0.0, "mostly_rare": 0.2, "outcome": 1.0}
    spec = parse_spec(starter_spec(profile, source="x.csv", project="p", target="outcome"))
    assert spec.features.categorical == ["merchant"]
    assert set(spec.features.exclude) == {"note", "mostly_rare"}


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


def _ids_table(rows: int = 400, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cards = rng.integers(4_000_000_000_000_000, 4_999_999_999_999_999, 40, dtype=np.int64)
    near = rng.permutation(rows).astype(object)
    near[:10] = near[10]  # 97.5% distinct: still an id
    return pd.DataFrame(
        {
            "Unnamed: 0": np.arange(rows),
            "customer_number": rng.permutation(np.arange(10_000, 10_000 + rows)),
            "cc_num": cards[rng.integers(0, 40, rows)],
            "iban": [f"{n:016d}" for n in rng.integers(10**15, 10**16 - 1, rows)],
            "ref": [f"ACC{i:06d}" for i in rng.permutation(rows)],
            "member_no": near.astype("int64"),
            "amount": rng.lognormal(5, 1, rows).round(2),  # near-unique, but a measurement
            "num_dependents": rng.integers(0, 5, rows),
            "bad": rng.integers(0, 2, rows),
        }
    )


def test_ids_are_found_by_name_codes_digits_and_the_pandas_index() -> None:
    profile = profile_table(_ids_table())
    assert profile.id_candidates == [
        "Unnamed: 0",
        "customer_number",
        "cc_num",
        "iban",
        "ref",
        "member_no",
    ]
    assert "card or account number" in profile.id_reasons["cc_num"]  # repeated, still an id
    assert "pandas" in profile.id_reasons["Unnamed: 0"]
    assert "letter-and-digit" in profile.id_reasons["ref"]


def test_every_id_is_excluded_and_the_named_unique_one_is_the_id_column() -> None:
    raw = starter_spec(profile_table(_ids_table()), source="t.csv", project="t", target="bad")
    spec = parse_spec(raw)
    assert spec.data.id_column == "customer_number"  # a name before the pandas index
    assert spec.features.exclude == ["Unnamed: 0", "cc_num", "iban", "ref", "member_no"]
    assert spec.model_features() == ["amount", "num_dependents"]
    cols = spec.contract.columns
    assert cols["customer_number"].unique and not cols["member_no"].unique
    for name in ("Unnamed: 0", "cc_num", "member_no"):  # new customers have new numbers
        assert (cols[name].min, cols[name].max, cols[name].allowed) == (None, None, None)
    header = render_spec_yaml(raw, profile_table(_ids_table())).split("\nproject:")[0]
    assert "#   - excluded as an id: cc_num (a 12- to 19-digit number" in header


@pytest.mark.parametrize(
    ("name", "protected"),
    [
        ("AGE", True),
        ("applicant_age", True),
        ("MaritalStatus", True),
        ("MARRIAGE", True),
        ("DAYS_BIRTH", True),
        ("zip", True),
        ("postal_code", True),
        ("CODE_GENDER", True),
        ("sex2", True),  # a number glued to the word
        ("mortgage", False),
        ("page_views", False),
        ("usage", False),
        ("postal_fee", False),
    ],
)
def test_protected_names_match_whole_words(name: str, protected: bool) -> None:
    assert is_protected_name(name) is protected


def test_protected_columns_and_dates_never_become_features() -> None:
    rows = 120
    rng = np.random.default_rng(2)
    df = pd.DataFrame(
        {
            "dob": pd.date_range("1960-01-01", periods=rows, freq="90D").strftime("%Y-%m-%d"),
            "opened": pd.date_range("2020-01-01", periods=rows, freq="D").strftime("%Y-%m-%d"),
            "last_payment": pd.date_range("2021-01-01", periods=rows, freq="D").astype(str),
            "sex": rng.choice(["f", "m"], rows),
            "Age": rng.integers(20, 70, rows),
            "balance": rng.normal(0, 1, rows),
            "y": rng.integers(0, 2, rows),
        }
    )
    spec = parse_spec(starter_spec(profile_table(df), source="t.csv", project="t", target="y"))
    assert spec.data.time_column == "opened"  # the first date that is not a date of birth
    assert spec.protected == ["dob", "sex", "Age"]
    assert spec.features.exclude == ["last_payment"]
    assert spec.model_features() == ["balance"] and spec.features.categorical == []
    assert spec.features.calendar == {}  # calendar parts only when asked

    custom = starter_spec(
        profile_table(df),
        source="t.csv",
        project="t",
        target="y",
        protected_words=["balance"],
        calendar=["hour", "weekend"],
    )
    assert custom["protected"] == ["balance"]
    assert custom["features"]["calendar"] == {"time_hour": "hour", "time_weekend": "weekend"}
    assert custom["data"]["time_column"] == "dob"  # 'dob' is no longer a protected word


def test_calendar_parts_need_a_time_column_and_known_parts() -> None:
    df = pd.DataFrame({"x": [1.5, 2.5, 3.5, 4.5], "y": [0, 1, 0, 1]})
    with pytest.raises(DataError, match=r"no column holds dates or times"):
        starter_spec(profile_table(df), source="t.csv", project="t", calendar=["hour"])
    with pytest.raises(DataError, match=r"\['noon'\] are not known; the parts are weekend"):
        starter_spec(profile_table(df), source="t.csv", project="t", calendar=["noon"])


@pytest.mark.parametrize(
    ("values", "codes"),
    [
        ([0, 1, 2, 3, 4, 5] * 20 + [96] * 4 + [98] * 6, [96, 98]),
        (list(range(300, 900, 5)) + [-1] * 5, [-1]),
        (list(range(0, 60)) * 2 + [999] * 10, [999]),
        (list(range(0, 60)) * 2 + [999] * 2, []),  # twice is an outlier, not a code
        (list(range(18, 100)) * 2, []),  # 99 sits inside ages 18-99
        (list(range(-5, 6)) * 10, []),  # -1 is a value where values go negative
        ([-1, 0, 1] * 30, []),  # too few other values to measure a margin on
        ([0.5, 1.25, 2.75, 3.5] * 10 + [9999.0] * 3, [9999]),
    ],
)
def test_sentinel_codes_are_code_shaped_repeated_and_far_from_the_rest(
    values: list[float], codes: list[int]
) -> None:
    assert sentinel_codes(pd.Series(values)) == codes


def test_sentinel_codes_become_missing_values_and_leave_the_observed_range() -> None:
    rng = np.random.default_rng(4)
    rows = 300
    dependents = rng.integers(0, 4, rows)
    dependents[:12] = 98
    df = pd.DataFrame({"num_dependents": dependents, "y": rng.integers(0, 2, rows)})
    profile = profile_table(df)
    col = profile.column("num_dependents")
    assert (col.missing_codes, col.min, col.max, col.distinct_values) == ((98,), 0, 3, [0, 1, 2, 3])
    raw = starter_spec(profile, source="t.csv", project="t", target="y")
    rule = parse_spec(raw).contract.columns["num_dependents"]
    assert (rule.nullable, rule.missing_values, rule.allowed) == (True, [98], [0, 1, 2, 3])
    assert "#   - num_dependents: 98 read as missing" in render_spec_yaml(raw, profile)


def test_starter_spec_has_gates_no_reason_texts_and_waits_for_review(
    profile: TableProfile,
) -> None:
    raw = starter_spec(profile, source="data/loans.csv", project="loans")
    spec = parse_spec(raw)
    assert spec.reviewed is False and spec.reasons.texts == {}
    assert spec.gates.model_dump(exclude_none=True) == {
        "min_auc": 0.6,
        "min_auc_over_baseline": 0.0,
        "max_train_test_gap": 0.05,
        "max_ece": 0.05,
    }
    assert spec.reason_texts() == {f: f for f in spec.model_features()}
    header = render_spec_yaml(raw, profile).split("\nproject:")[0]
    assert "`reviewed: true`" in header and "max_ece 0.05" in header


def test_an_id_name_excludes_a_repeated_key_but_a_weaker_word_needs_unique_values() -> None:
    rng = np.random.default_rng(5)
    rows = 200
    df = pd.DataFrame(
        {
            "TRANSACTION_ID": np.arange(rows),
            "CUSTOMER_ID": rng.integers(0, 20, rows),  # one per customer: repeated, still a key
            "card_type": rng.choice(["debit", "credit"], rows),
            "num_dependents": rng.integers(0, 4, rows),
            "TX_AMOUNT": rng.lognormal(3, 1, rows).round(2),
            "TX_FRAUD": rng.integers(0, 2, rows),
        }
    )
    profile = profile_table(df)
    assert profile.id_candidates == ["TRANSACTION_ID", "CUSTOMER_ID"]
    spec = parse_spec(starter_spec(profile, source="t.csv", project="t", target="TX_FRAUD"))
    assert (spec.data.id_column, spec.features.exclude) == ("TRANSACTION_ID", ["CUSTOMER_ID"])
    assert spec.model_features() == ["card_type", "num_dependents", "TX_AMOUNT"]
