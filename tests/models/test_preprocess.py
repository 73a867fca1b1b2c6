"""Tests for keel.models.preprocess: the frame-to-matrix mapping every model family reads."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keel.errors import DataError
from keel.models.preprocess import Preprocessor


def _train_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "amount": [10.0, np.nan, 30.5, 4.0, 7.0],
            "grade": ["c", "a", None, "b", "a"],
            "bill": [100.0, 50.0, 0.0, 20.0, np.nan],
            "limit": [200.0, 100.0, 10.0, 0.0, 50.0],
        }
    )


def _fitted() -> Preprocessor:
    return Preprocessor(
        features=["amount", "grade", "ratio"],
        categorical=["grade"],
        derived={"ratio": "bill / limit"},
    ).fit(_train_frame())


def test_numeric_columns_pass_through_as_float_with_nan_kept() -> None:
    frame = pd.DataFrame({"a": [1, 2, 3], "b": [0.5, np.nan, -2.25]})
    out = Preprocessor(["b", "a"]).fit(frame).transform(frame)
    assert out.dtype == np.float64
    assert out.shape == (3, 2)
    np.testing.assert_array_equal(out[:, 0], [0.5, np.nan, -2.25])
    np.testing.assert_array_equal(out[:, 1], [1.0, 2.0, 3.0])


def test_nullable_integer_column_gives_nan_for_missing() -> None:
    frame = pd.DataFrame({"a": pd.array([1, None, 3], dtype="Int64")})
    out = Preprocessor(["a"]).fit(frame).transform(frame)
    np.testing.assert_array_equal(out[:, 0], [1.0, np.nan, 3.0])


def test_categories_are_learned_sorted_from_training_without_missing() -> None:
    pre = _fitted()
    assert pre.categories_ == {"grade": ["a", "b", "c"]}


def test_categorical_codes_follow_sorted_training_categories() -> None:
    pre = _fitted()
    out = pre.transform(
        pd.DataFrame(
            {
                "amount": [1.0] * 5,
                "grade": ["a", "b", "c", "zzz", None],
                "bill": [1.0] * 5,
                "limit": [1.0] * 5,
            }
        )
    )
    # 'zzz' was never seen in training and None is missing: both become NaN.
    np.testing.assert_array_equal(out[:, 1], [0.0, 1.0, 2.0, np.nan, np.nan])


def test_category_codes_do_not_depend_on_training_row_order() -> None:
    frame = _train_frame()
    reordered = frame.iloc[::-1].reset_index(drop=True)
    a = Preprocessor(["grade"], ["grade"]).fit(frame)
    b = Preprocessor(["grade"], ["grade"]).fit(reordered)
    assert a.categories_ == b.categories_
    np.testing.assert_array_equal(a.transform(frame), b.transform(frame))


def test_integer_category_codes_survive_a_missing_value_in_the_batch() -> None:
    # A missing value turns an int column into float (2 -> 2.0); the codes must not change.
    pre = Preprocessor(["edu"], ["edu"]).fit(pd.DataFrame({"edu": [1, 2, 3, 2]}))
    with_missing = pre.transform(pd.DataFrame({"edu": [1.0, 2.0, np.nan, 3.0]}))
    ints = pre.transform(pd.DataFrame({"edu": [1, 2, 3]}))
    np.testing.assert_array_equal(with_missing[:, 0], [0.0, 1.0, np.nan, 2.0])
    np.testing.assert_array_equal(ints[:, 0], [0.0, 1.0, 2.0])


def test_integer_categories_learned_from_a_column_with_missing_values_match_plain_ints() -> None:
    pre = Preprocessor(["edu"], ["edu"]).fit(pd.DataFrame({"edu": [1.0, np.nan, 2.0]}))
    assert pre.categories_ == {"edu": ["1", "2"]}
    np.testing.assert_array_equal(pre.transform(pd.DataFrame({"edu": [2, 1]}))[:, 0], [1.0, 0.0])


def test_derived_features_are_computed_from_their_expression() -> None:
    pre = _fitted()
    frame = _train_frame()
    out = pre.transform(frame)
    bill, limit = frame["bill"].to_numpy(), frame["limit"].to_numpy()
    expected = [
        b / lim if lim != 0 and not np.isnan(b) else np.nan
        for b, lim in zip(bill, limit, strict=True)
    ]
    # Division by zero and a missing operand both give NaN.
    np.testing.assert_array_equal(out[:, 2], expected)
    assert np.isnan(out[3, 2]) and np.isnan(out[4, 2])
    assert out[0, 2] == 0.5


def test_one_row_gives_the_same_values_as_the_table() -> None:
    pre = _fitted()
    frame = _train_frame()
    table = pre.transform(frame)
    for i in range(len(frame)):
        row = pre.transform(frame.iloc[[i]])
        np.testing.assert_array_equal(row[0], table[i])


def test_inputs_lists_raw_columns_including_those_read_only_by_derived_features() -> None:
    pre = Preprocessor(
        features=["amount", "ratio", "grade", "both"],
        categorical=["grade"],
        derived={"ratio": "bill / limit", "both": "amount + max(bill, extra)"},
    )
    assert pre.inputs() == ["amount", "bill", "limit", "grade", "extra"]
    assert "ratio" not in pre.inputs() and "both" not in pre.inputs()


def test_categorical_indices_are_positions_in_feature_order() -> None:
    pre = Preprocessor(["x", "g1", "y", "g2"], ["g2", "g1"])
    assert pre.categorical_indices() == [1, 3]


def test_to_dict_from_dict_round_trip_through_json_gives_the_same_matrix() -> None:
    pre = _fitted()
    data = json.loads(json.dumps(pre.to_dict()))
    again = Preprocessor.from_dict(data)
    assert again.features == pre.features
    assert again.categorical == pre.categorical
    assert again.derived == pre.derived
    assert again.categories_ == pre.categories_
    frame = pd.DataFrame(
        {
            "amount": [1.0, np.nan],
            "grade": ["b", "new"],
            "bill": [3.0, 1.0],
            "limit": [4.0, 0.0],
        }
    )
    np.testing.assert_array_equal(again.transform(frame), pre.transform(frame))


def test_missing_input_column_raises_data_error_naming_it() -> None:
    pre = _fitted()
    frame = _train_frame().drop(columns=["limit"])
    with pytest.raises(DataError, match=r"lacks column\(s\) \['limit'\]"):
        pre.transform(frame)


def test_fit_also_refuses_a_frame_without_an_input_column() -> None:
    pre = Preprocessor(["amount", "grade"], ["grade"])
    with pytest.raises(DataError, match=r"\['grade'\]"):
        pre.fit(pd.DataFrame({"amount": [1.0]}))


@settings(max_examples=60, deadline=None)
@given(
    frame=st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(-(10**6), 10**6), st.floats(-1e6, 1e6)),
            st.one_of(st.none(), st.sampled_from(["a", "b", "c", "zzz-unseen"])),
            st.one_of(st.none(), st.integers(-3, 3)),
            st.one_of(st.none(), st.floats(-1e5, 1e5), st.sampled_from([0.0, -1.0])),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_records_give_the_same_matrix_as_the_table(frame: list[tuple]) -> None:
    """The request path equals the table path, feature by feature.

    The request path takes records of plain floats; the table path, numpy columns.
    """
    preprocessor = Preprocessor(
        features=["amount", "grade", "ratio", "late", "flags", "share"],
        categorical=["grade", "late"],
        derived={
            "ratio": "bill / limit",
            "flags": "sum(late > 0, bill == 0, amount < 0) * 2",
            "share": "log1p(max(bill, amount, 0)) / mean(limit, amount)",
        },
    ).fit(
        pd.DataFrame(
            {
                "amount": [1.0, 2.0],
                "grade": ["a", "b"],
                "bill": [1.0, 0.0],
                "limit": [1.0, 2.0],
                "late": [0, 2],
            }
        )
    )
    table = pd.DataFrame(frame, columns=["amount", "grade", "late", "bill"]).assign(
        limit=lambda f: f["bill"] * 3
    )
    records = [
        {k: (None if pd.isna(v) else v) for k, v in row.items()} for row in table.to_dict("records")
    ]

    np.testing.assert_array_equal(
        preprocessor.transform_records(records), preprocessor.transform(table)
    )
