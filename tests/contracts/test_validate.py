"""Data contracts: lossless dtype conforming, pandera rules, and the report's counts and samples."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest

from keel.contracts.validate import ContractReport, Failure, check_contract, enforce_contract
from keel.errors import ContractError
from keel.spec import ContractSpec


def _contract(columns: dict[str, dict[str, Any]], **options: Any) -> ContractSpec:
    return ContractSpec.model_validate({"columns": columns, **options})


def _clients() -> pd.DataFrame:
    """Six clients with the UCI credit file's quirks: integral floats written as 5e+05,
    undocumented EDUCATION/MARRIAGE codes, and a float-typed limit column."""
    return pd.DataFrame(
        {
            "ID": [1, 2, 3, 4, 5, 6],
            "LIMIT_BAL": [20000.0, 120000.0, 5e05, 5e04, 1e06, 9e04],
            "SEX": [2, 2, 1, 1, 2, 1],
            "EDUCATION": [2, 2, 0, 5, 1, 6],
            "MARRIAGE": [1, 2, 0, 1, 3, 2],
            "AGE": [24, 26, 34, 37, 57, 37],
            "PAY_0": [2, -1, 0, 0, -2, -1],
            "default.payment.next.month": [1, 1, 0, 0, 0, 1],
        }
    )


CREDIT = {
    "ID": {"dtype": "int", "unique": True, "min": 1},
    "LIMIT_BAL": {"dtype": "int", "min": 1, "max": 10_000_000},
    "SEX": {"dtype": "int", "allowed": [1, 2]},
    "EDUCATION": {"dtype": "int", "allowed": [0, 1, 2, 3, 4, 5, 6]},
    "MARRIAGE": {"dtype": "int", "allowed": [0, 1, 2, 3]},
    "AGE": {"dtype": "int", "min": 18, "max": 100},
    "PAY_0": {"dtype": "int", "min": -2, "max": 9},
    "default.payment.next.month": {"dtype": "int", "allowed": [0, 1]},
}


def _only(report: ContractReport) -> Failure:
    assert len(report.failures) == 1, report.summary()
    return report.failures[0]


def test_clean_credit_frame_holds_and_integral_floats_become_int64() -> None:
    typed, report = check_contract(_clients(), _contract(CREDIT))
    assert report.ok, report.summary()
    assert (report.rows, report.columns_checked, report.dropped_columns) == (6, 8, ())
    assert typed["LIMIT_BAL"].dtype == np.int64
    assert typed["LIMIT_BAL"].tolist() == [20000, 120000, 500000, 50000, 1000000, 90000]
    assert list(typed.columns) == list(CREDIT)
    assert report.summary() == "contract holds: 6 rows, 8 columns checked"


def test_integral_float_text_from_a_csv_is_accepted_as_int() -> None:
    frame = pd.DataFrame({"LIMIT_BAL": ["5e+05", "20000", "1.2e+05"]})
    typed, report = check_contract(frame, _contract({"LIMIT_BAL": {"dtype": "int"}}))
    assert report.ok, report.summary()
    assert typed["LIMIT_BAL"].dtype == np.int64
    assert typed["LIMIT_BAL"].tolist() == [500000, 20000, 120000]


def test_fraction_in_int_column_is_refused_not_truncated() -> None:
    frame = _clients()
    frame.loc[[1, 4], "LIMIT_BAL"] = [1.5, 250000.5]
    typed, report = check_contract(frame, _contract(CREDIT))
    failure = _only(report)
    assert (failure.column, failure.rule, failure.count) == ("LIMIT_BAL", "dtype int", 2)
    assert failure.sample == [{"row": 1, "value": 1.5}, {"row": 4, "value": 250000.5}]
    assert failure.detail == "whole numbers expected"
    assert typed["LIMIT_BAL"].tolist()[1] == 1.5  # left as read, not truncated to 1


@pytest.mark.parametrize("value", ["abc", "12k", "inf"])
def test_text_in_int_column_is_refused(value: str) -> None:
    frame = pd.DataFrame({"AGE": ["24", value, "37"]})
    failure = _only(check_contract(frame, _contract({"AGE": {"dtype": "int"}}))[1])
    assert (failure.column, failure.rule, failure.count) == ("AGE", "dtype int", 1)
    assert failure.sample == [{"row": 1, "value": value}]


def test_text_in_float_column_is_refused() -> None:
    frame = pd.DataFrame({"rate": [0.1, "n/a", 0.3, "?"]})
    failure = _only(check_contract(frame, _contract({"rate": {"dtype": "float"}}))[1])
    assert (failure.rule, failure.count, failure.detail) == ("dtype float", 2, "numbers expected")
    assert [s["row"] for s in failure.sample] == [1, 3]


def test_bool_in_int_column_is_refused() -> None:
    frame = pd.DataFrame({"flag": [True, False, True]})
    failure = _only(check_contract(frame, _contract({"flag": {"dtype": "int"}}))[1])
    assert (failure.rule, failure.count) == ("dtype int", 3)


def test_sample_rows_are_zero_based_positions_even_with_another_index() -> None:
    frame = pd.DataFrame({"AGE": [30.0, 40.5, 50.0]}, index=[100, 200, 300])
    failure = _only(check_contract(frame, _contract({"AGE": {"dtype": "int"}}))[1])
    assert failure.sample == [{"row": 1, "value": 40.5}]


def test_sample_is_capped_but_count_is_not() -> None:
    frame = pd.DataFrame({"AGE": [float(i) + 0.5 for i in range(10)]})
    failure = _only(
        check_contract(frame, _contract({"AGE": {"dtype": "int"}}, failure_sample=3))[1]
    )
    assert failure.count == 10
    assert [s["row"] for s in failure.sample] == [0, 1, 2]


def test_missing_column_is_reported_and_suggests_only_columns_outside_the_contract() -> None:
    frame = _clients().rename(columns={"PAY_0": "PAY_1"})
    contract = _contract({**CREDIT, "PAY_2": {"dtype": "int"}})
    frame["PAY_2"] = frame["PAY_1"]
    typed, report = check_contract(frame, contract)
    failure = _only(report)
    assert (failure.column, failure.rule, failure.count, failure.sample) == (
        "PAY_0",
        "present",
        6,
        [],
    )
    # PAY_2 is closer by name but is a contract column of its own; PAY_1 is the likely rename.
    assert "Did you mean 'PAY_1'?" in failure.detail
    assert "PAY_2'?" not in failure.detail
    assert failure.detail.startswith("column is missing from the data.")
    assert "Columns seen: ID, LIMIT_BAL" in failure.detail
    assert "PAY_0" not in typed.columns
    assert report.columns_checked == 8
    assert report.dropped_columns == ("PAY_1",)


def test_missing_column_without_a_close_extra_has_no_suggestion() -> None:
    frame = _clients().drop(columns=["AGE"])
    failure = _only(check_contract(frame, _contract(CREDIT))[1])
    assert (failure.column, failure.rule) == ("AGE", "present")
    assert "Did you mean" not in failure.detail


def test_extra_columns_are_dropped_by_default() -> None:
    frame = _clients().assign(BILL_AMT1=1, note="x")
    typed, report = check_contract(frame, _contract(CREDIT))
    assert report.ok
    assert report.dropped_columns == ("BILL_AMT1", "note")
    assert list(typed.columns) == list(CREDIT)


def test_extra_columns_are_refused_when_the_contract_says_error() -> None:
    frame = _clients().assign(BILL_AMT1=1, note="x")
    _, report = check_contract(frame, _contract(CREDIT, extra_columns="error"))
    assert [(f.column, f.rule, f.count) for f in report.failures] == [
        ("BILL_AMT1", "in contract", 6),
        ("note", "in contract", 6),
    ]
    assert report.dropped_columns == ()
    assert "extra_columns is 'error'" in report.failures[0].detail


def test_min_and_max_failures_are_counted_separately() -> None:
    frame = _clients()
    frame["AGE"] = [24, 17, 101, 15, 57, 120]
    failures = {f.rule: f for f in check_contract(frame, _contract(CREDIT))[1].failures}
    assert set(failures) == {"min: 18.0", "max: 100.0"}
    assert (failures["min: 18.0"].column, failures["min: 18.0"].count) == ("AGE", 2)
    assert failures["min: 18.0"].sample == [{"row": 1, "value": 17}, {"row": 3, "value": 15}]
    assert failures["max: 100.0"].count == 2
    assert failures["max: 100.0"].sample == [{"row": 2, "value": 101}, {"row": 5, "value": 120}]


def test_bounds_are_inclusive() -> None:
    frame = _clients()
    frame["AGE"] = [18, 100, 18, 100, 50, 50]
    assert check_contract(frame, _contract(CREDIT))[1].ok


def test_undocumented_codes_break_an_allowed_list() -> None:
    contract = _contract({**CREDIT, "EDUCATION": {"dtype": "int", "allowed": [1, 2, 3, 4]}})
    failure = _only(check_contract(_clients(), contract)[1])
    assert (failure.column, failure.rule, failure.count) == (
        "EDUCATION",
        "allowed: [1, 2, 3, 4]",
        3,
    )
    assert failure.sample == [
        {"row": 2, "value": 0},
        {"row": 3, "value": 5},
        {"row": 5, "value": 6},
    ]


def test_unique_failure_reports_every_repeated_row() -> None:
    frame = _clients()
    frame["ID"] = [1, 2, 2, 4, 4, 4]
    failure = _only(check_contract(frame, _contract(CREDIT))[1])
    assert (failure.column, failure.rule, failure.count) == ("ID", "unique: true", 5)
    assert [s["row"] for s in failure.sample] == [1, 2, 3, 4, 5]
    assert [s["value"] for s in failure.sample] == [2, 2, 4, 4, 4]


def test_nulls_are_refused_unless_nullable() -> None:
    frame = _clients()
    frame["LIMIT_BAL"] = [20000.0, np.nan, 5e05, np.nan, 1e06, 9e04]
    typed, report = check_contract(frame, _contract(CREDIT))
    failure = _only(report)
    assert (failure.column, failure.rule, failure.count) == ("LIMIT_BAL", "nullable: false", 2)
    assert failure.sample == [{"row": 1, "value": None}, {"row": 3, "value": None}]

    nullable = _contract({**CREDIT, "LIMIT_BAL": {"dtype": "int", "nullable": True, "min": 1}})
    typed, report = check_contract(frame, nullable)
    assert report.ok, report.summary()
    assert str(typed["LIMIT_BAL"].dtype) == "Int64"
    assert typed["LIMIT_BAL"].isna().tolist() == [False, True, False, True, False, False]
    assert typed["LIMIT_BAL"].iloc[2] == 500000


def test_str_column_with_numeric_codes_matches_allowed_as_text() -> None:
    frame = pd.DataFrame({"region": [1.0, 2.0, np.nan, 3.0, 2.0]})
    contract = _contract({"region": {"dtype": "str", "nullable": True, "allowed": [1, 2]}})
    typed, report = check_contract(frame, contract)
    failure = _only(report)
    assert (failure.rule, failure.count, failure.sample) == (
        "allowed: ['1', '2']",
        1,
        [{"row": 3, "value": "3"}],
    )
    assert typed["region"].tolist()[:2] == ["1", "2"]  # never '1.0'
    assert pd.isna(typed["region"].iloc[2])


def test_str_column_keeps_text() -> None:
    frame = pd.DataFrame({"grade": ["A", "B", "A"]})
    typed, report = check_contract(
        frame, _contract({"grade": {"dtype": "str", "allowed": ["A", "B"]}})
    )
    assert report.ok
    assert typed["grade"].tolist() == ["A", "B", "A"]
    assert pd.api.types.is_string_dtype(typed["grade"])


def test_bool_text_is_parsed_and_unknown_words_refused() -> None:
    frame = pd.DataFrame({"autopay": ["yes", "No", " TRUE ", "0", None, "f", "1", "y"]})
    typed, report = check_contract(
        frame, _contract({"autopay": {"dtype": "bool", "nullable": True}})
    )
    assert report.ok, report.summary()
    assert str(typed["autopay"].dtype) == "boolean"
    assert typed["autopay"].tolist()[:4] == [True, False, True, False]
    assert pd.isna(typed["autopay"].iloc[4])
    assert typed["autopay"].tolist()[5:] == [False, True, True]

    frame.loc[2, "autopay"] = "maybe"
    failure = _only(
        check_contract(frame, _contract({"autopay": {"dtype": "bool", "nullable": True}}))[1]
    )
    assert (failure.rule, failure.count, failure.sample) == (
        "dtype bool",
        1,
        [{"row": 2, "value": "maybe"}],
    )


def test_real_bool_column_is_kept() -> None:
    frame = pd.DataFrame({"autopay": [True, False]})
    typed, report = check_contract(frame, _contract({"autopay": {"dtype": "bool"}}))
    assert report.ok
    assert typed["autopay"].tolist() == [True, False]


def test_datetime_text_is_parsed_and_non_iso_refused() -> None:
    contract = _contract({"opened": {"dtype": "datetime", "nullable": True}})
    frame = pd.DataFrame({"opened": ["2005-04-01", "2005-09-30T08:15:00", None]})
    typed, report = check_contract(frame, contract)
    assert report.ok, report.summary()
    assert pd.api.types.is_datetime64_any_dtype(typed["opened"])
    assert typed["opened"].iloc[1] == pd.Timestamp(2005, 9, 30, 8, 15)
    assert pd.isna(typed["opened"].iloc[2])

    frame = pd.DataFrame({"opened": ["2005-04-01", "30/09/2005", "soon"]})
    failure = _only(check_contract(frame, contract)[1])
    assert (failure.rule, failure.count) == ("dtype datetime", 2)
    assert failure.sample == [{"row": 1, "value": "30/09/2005"}, {"row": 2, "value": "soon"}]


def test_dtype_failure_skips_value_rules_for_that_column_but_not_others() -> None:
    frame = _clients()
    frame["LIMIT_BAL"] = frame["LIMIT_BAL"].astype(object)
    frame.loc[0, "LIMIT_BAL"] = "lots"
    frame.loc[0, "AGE"] = 5
    _, report = check_contract(frame, _contract(CREDIT))
    assert [(f.column, f.rule, f.count) for f in report.failures] == [
        ("LIMIT_BAL", "dtype int", 1),
        ("AGE", "min: 18.0", 1),
    ]


def test_report_to_dict_is_json_and_summary_names_column_rule_and_count() -> None:
    frame = _clients().drop(columns=["SEX"]).assign(extra=1)
    frame["AGE"] = [24, 17, 34, 37, np.nan, 37]
    frame.loc[2, "LIMIT_BAL"] = 2.5
    _, report = check_contract(frame, _contract(CREDIT))
    as_dict = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert as_dict["ok"] is False
    assert (as_dict["rows"], as_dict["columns_checked"], as_dict["dropped_columns"]) == (
        6,
        7,
        ["extra"],
    )
    assert [(f["column"], f["rule"], f["count"]) for f in as_dict["failures"]] == [
        ("SEX", "present", 6),
        ("LIMIT_BAL", "dtype int", 1),
        ("AGE", "nullable: false", 1),
        ("AGE", "min: 18.0", 1),
    ]
    assert as_dict["failures"][2]["sample"] == [{"row": 4, "value": None}]

    lines = report.summary().splitlines()
    assert lines[0] == "contract broken: 4 rule(s) failed on 6 rows"
    assert (
        lines[2]
        == "  - column 'LIMIT_BAL', rule dtype int: 1 row(s) fail (whole numbers expected); "
        "e.g. row 2: 2.5"
    )
    assert lines[4] == "  - column 'AGE', rule min: 18.0: 1 row(s) fail; e.g. row 1: 17"
    assert lines[1].startswith("  - column 'SEX', rule present: 6 row(s) fail (column is missing")


def test_enforce_contract_raises_with_the_report() -> None:
    frame = _clients()
    frame.loc[3, "SEX"] = 3
    with pytest.raises(
        ContractError,
        match=r"column 'SEX', rule allowed: \[1, 2\]: 1 row\(s\) fail; e\.g\. row 3: 3",
    ) as info:
        enforce_contract(frame, _contract(CREDIT))
    report = info.value.report
    assert isinstance(report, ContractReport)
    assert [(f.column, f.count) for f in report.failures] == [("SEX", 1)]
    assert info.value.exit_code == 4


def test_enforce_contract_returns_typed_frame_when_it_holds() -> None:
    typed, report = enforce_contract(_clients(), _contract(CREDIT))
    assert report.ok
    assert typed["LIMIT_BAL"].dtype == np.int64


def test_missing_value_codes_are_read_as_missing_before_any_rule() -> None:
    contract = _contract(
        {
            "dependents": {
                "dtype": "int",
                "nullable": True,
                "min": 0,
                "max": 5,
                "allowed": [0, 1, 2, 3, 4, 5],
                "missing_values": [96, 98],
            },
            "grade": {
                "dtype": "str",
                "nullable": True,
                "allowed": ["A", "B"],
                "missing_values": ["?"],
            },
            "score": {"dtype": "float", "nullable": True, "min": 300, "missing_values": [-1]},
        }
    )
    frame = pd.DataFrame(
        {
            "dependents": ["2", "96", "98.0", "0"],  # a CSV's text: the codes still match
            "grade": ["A", "?", "B", None],
            "score": [-1.0, 650.5, -1, 700],
        }
    )
    typed, report = check_contract(frame, contract)
    assert report.ok, report.summary()
    assert typed["dependents"].tolist() == [2, pd.NA, pd.NA, 0]
    assert str(typed["dependents"].dtype) == "Int64"
    assert typed["grade"].isna().tolist() == [False, True, False, True]
    assert typed["score"].isna().tolist() == [True, False, True, False]


def test_a_value_that_is_not_a_code_still_breaks_its_rule() -> None:
    contract = _contract(
        {"n": {"dtype": "int", "nullable": True, "max": 5, "missing_values": [98]}}
    )
    _, report = check_contract(pd.DataFrame({"n": [1, 97, 98]}), contract)
    assert [(f.rule, f.count, f.sample) for f in report.failures] == [
        ("max: 5.0", 1, [{"row": 1, "value": 97}])
    ]


@pytest.mark.parametrize(
    ("dtype", "values", "codes"),
    [
        ("int", [1, 96, 96.0, "96", True, None, 7], [96]),
        ("float", [-1, -1.0, 0.5, "x", None], [-1]),
        ("str", ["?", "96", "a", None], ["?", 96]),
        ("datetime", ["1900-01-01", "2024-01-01", None], ["1900-01-01"]),
    ],
)
def test_one_value_and_a_whole_column_agree_on_what_is_a_code(
    dtype: str, values: list[Any], codes: list[Any]
) -> None:
    from keel.contracts.validate import is_missing_code, read_missing_codes
    from keel.spec import ColumnContract

    rule = ColumnContract.model_validate(
        {"dtype": dtype, "nullable": True, "missing_values": codes}
    )
    kept = [v for v in values if not isinstance(v, bool) and v != "x"]
    series = pd.Series(kept, dtype="object")
    if dtype == "datetime":
        series = pd.to_datetime(series)
    elif dtype in ("int", "float"):
        series = pd.to_numeric(series).astype("float64")
    else:
        series = series.astype("string")
    column = read_missing_codes(series, rule).isna().tolist()
    one = [v is None or is_missing_code(v, dtype, codes) for v in kept]
    assert column == one
    assert not is_missing_code(True, "int", [1])  # True is not the code 1


def test_checking_a_contract_does_not_import_pyspark_pandas_even_where_pyspark_is_installed() -> (
    None
):
    # pandera imports pyspark.pandas whenever pyspark is importable (it is in the dev
    # environment, for the Spark tests): seconds per process, a FutureWarning, and beside
    # pandas 3 an ImportError that pandera swallows. Keel hides it for that one import.
    code = (
        "import sys, pandas as pd\n"
        "from keel.contracts.validate import check_contract\n"
        "from keel.spec import ContractSpec\n"
        "contract = ContractSpec.model_validate({'columns': {'a': {'dtype': 'int', 'min': 0}}})\n"
        "_, report = check_contract(pd.DataFrame({'a': [1, 2]}), contract)\n"
        "assert report.ok, report\n"
        "assert 'pandera.pandas' in sys.modules\n"
        "assert 'pyspark.pandas' not in sys.modules, 'pyspark.pandas was imported or left hidden'\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error::FutureWarning:pandera", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
