"""Cleaning rules stated in the spec: recoding, the duplicate policy, and the 0/1 target."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest

from keel.errors import DataError
from keel.features.cleaning import CleaningSummary, clean, target_vector
from keel.spec import ProjectSpec, parse_spec


def _spec(*, target: dict[str, Any] | None = None, **data: Any) -> ProjectSpec:
    return parse_spec(
        {
            "project": "credit",
            "data": {"source": "clients.csv", "id_column": "ID", **data},
            "contract": {
                "columns": {
                    "ID": {"dtype": "int"},
                    "EDUCATION": {"dtype": "int"},
                    "MARRIAGE": {"dtype": "int"},
                    "region": {"dtype": "str"},
                    "default": {"dtype": "int"},
                    "status": {"dtype": "str"},
                }
            },
            "target": target or {"column": "default"},
        }
    )


def _clients() -> pd.DataFrame:
    """Seven clients as the contract types them, with undocumented codes and no duplicate rows."""
    return pd.DataFrame(
        {
            "ID": [1, 2, 3, 4, 5, 6, 7],
            "EDUCATION": [2, 0, 5, 2, 6, 0, 1],
            "MARRIAGE": [1, 0, 2, 2, 3, 0, 0],
            "region": pd.array(["north", "0", "south", "north", "x", "x", "south"], dtype="string"),
            "default": [1, 0, 0, 1, 0, 0, 1],
            "status": pd.array(
                ["bad", "good", "good", "bad", "good", "good", "bad"], dtype="string"
            ),
        }
    )


def test_recode_int_columns_counts_each_code_and_replaces_it() -> None:
    spec = _spec(recode={"EDUCATION": {0: 4, 5: 4, 6: 4}, "MARRIAGE": {0: 3}}, duplicates="keep")
    frame, summary = clean(_clients(), spec)
    assert frame["EDUCATION"].tolist() == [2, 4, 4, 2, 4, 4, 1]
    assert frame["MARRIAGE"].tolist() == [1, 3, 2, 2, 3, 3, 3]
    assert frame["EDUCATION"].dtype == "int64"
    assert summary.recoded == {
        "EDUCATION": {"0 -> 4": 2, "5 -> 4": 1, "6 -> 4": 1},
        "MARRIAGE": {"0 -> 3": 3},
    }


def test_recode_str_column_matches_numeric_keys_as_text_and_stays_text() -> None:
    spec = _spec(recode={"region": {0: "other", "x": 9}}, duplicates="keep")
    frame, summary = clean(_clients(), spec)
    assert frame["region"].tolist() == ["north", "other", "south", "north", "9", "9", "south"]
    assert pd.api.types.is_string_dtype(frame["region"])
    assert summary.recoded == {"region": {"0 -> other": 1, "x -> 9": 2}}


def test_recode_code_never_seen_counts_zero_and_input_is_untouched() -> None:
    original = _clients()
    frame, summary = clean(original, _spec(recode={"EDUCATION": {99: 4}}, duplicates="keep"))
    assert summary.recoded == {"EDUCATION": {"99 -> 4": 0}}
    assert frame["EDUCATION"].tolist() == original["EDUCATION"].tolist()
    frame2, _ = clean(original, _spec(recode={"EDUCATION": {0: 4}}, duplicates="keep"))
    assert frame2["EDUCATION"].tolist() != original["EDUCATION"].tolist()
    assert original["EDUCATION"].tolist() == [
        2,
        0,
        5,
        2,
        6,
        0,
        1,
    ]  # the caller's frame is not changed


def _with_duplicates() -> pd.DataFrame:
    """The clients with rows 3 and 5 made copies of rows 0 and 1 in every column but the ID."""
    frame = _clients()
    frame.loc[3, ["EDUCATION", "MARRIAGE", "region", "default", "status"]] = frame.loc[
        0, ["EDUCATION", "MARRIAGE", "region", "default", "status"]
    ].tolist()
    frame.loc[5, ["EDUCATION", "MARRIAGE", "region", "default", "status"]] = frame.loc[
        1, ["EDUCATION", "MARRIAGE", "region", "default", "status"]
    ].tolist()
    return frame


def test_duplicates_ignoring_the_id_are_dropped_keeping_the_first() -> None:
    frame, summary = clean(_with_duplicates(), _spec(duplicates="drop"))
    assert frame["ID"].tolist() == [1, 2, 3, 5, 7]
    assert list(frame.index) == [0, 1, 2, 3, 4]
    assert summary == CleaningSummary(rows_in=7, rows_out=5, duplicates_dropped=2, recoded={})


def test_rows_differing_only_in_the_id_are_duplicates_but_any_other_difference_is_not() -> None:
    frame = _with_duplicates()
    frame.loc[5, "status"] = "bad"  # no longer a copy of row 1
    _, summary = clean(frame, _spec(duplicates="drop"))
    assert summary.duplicates_dropped == 1


def test_duplicates_after_recoding_are_found() -> None:
    frame = _with_duplicates()
    frame.loc[3, "EDUCATION"] = 5  # row 0 has 2; recoding both 2 and 5 to 4 makes them equal again
    _, before = clean(frame, _spec(duplicates="drop"))
    _, after = clean(frame, _spec(duplicates="drop", recode={"EDUCATION": {2: 4, 5: 4}}))
    assert (before.duplicates_dropped, after.duplicates_dropped) == (1, 2)


def test_duplicates_kept_when_asked() -> None:
    frame, summary = clean(_with_duplicates(), _spec(duplicates="keep"))
    assert len(frame) == 7
    assert (summary.rows_out, summary.duplicates_dropped) == (7, 0)


def test_duplicates_refused_by_default_with_count_and_rows() -> None:
    with pytest.raises(
        DataError,
        match=r"^2 row\(s\) repeat an earlier row in every column but the id "
        r"\(e\.g\. rows \[3, 5\]\); set data\.duplicates",
    ):
        clean(_with_duplicates(), _spec())


def test_no_duplicates_is_fine_under_error_policy() -> None:
    frame, summary = clean(_clients(), _spec())
    assert summary == CleaningSummary(7, 7, 0, {})
    pd.testing.assert_frame_equal(frame, _clients())


def test_summary_to_dict_is_json() -> None:
    _, summary = clean(_with_duplicates(), _spec(duplicates="drop", recode={"MARRIAGE": {0: 3}}))
    assert json.loads(json.dumps(summary.to_dict())) == {
        "rows_in": 7,
        "rows_out": 5,
        "duplicates_dropped": 2,
        "recoded": {"MARRIAGE": {"0 -> 3": 3}},
    }


def test_target_vector_int_positive() -> None:
    y = target_vector(_clients(), _spec())
    assert y.tolist() == [1, 0, 0, 1, 0, 0, 1]
    assert y.dtype == "int64"


def test_target_vector_int_positive_zero() -> None:
    y = target_vector(_clients(), _spec(target={"column": "default", "positive": 0}))
    assert y.tolist() == [0, 1, 1, 0, 1, 1, 0]


def test_target_vector_str_positive() -> None:
    y = target_vector(_clients(), _spec(target={"column": "status", "positive": "bad"}))
    assert y.tolist() == [1, 0, 0, 1, 0, 0, 1]


def test_target_vector_numeric_positive_on_text_target() -> None:
    frame = _clients()
    frame["status"] = pd.array(["1", "0", "0", "1", "0", "0", "0"], dtype="string")
    y = target_vector(frame, _spec(target={"column": "status", "positive": 1}))
    assert y.tolist() == [1, 0, 0, 1, 0, 0, 0]


def test_target_vector_refuses_missing_values() -> None:
    frame = _clients()
    frame["default"] = [1.0, 0.0, None, 1.0, None, 0.0, 1.0]
    with pytest.raises(DataError, match=r"^target 'default' has 2 missing value\(s\)$"):
        target_vector(frame, _spec())


def test_target_vector_refuses_one_class_naming_the_values() -> None:
    with pytest.raises(
        DataError,
        match=r"positive class 'Bad' gives one class only \(values seen: \['bad', 'good'\]\)",
    ):
        target_vector(_clients(), _spec(target={"column": "status", "positive": "Bad"}))
    frame = _clients().assign(default=0)
    with pytest.raises(
        DataError, match=r"^target 'default' must hold both classes; .*values seen: \['0'\]"
    ):
        target_vector(frame, _spec())
