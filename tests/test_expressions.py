"""The derived-feature language: results against plain numpy, refusals, and row-by-row == batch."""

from __future__ import annotations

import operator
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keel.errors import SpecError
from keel.expressions import columns, compile_row, evaluate, parse

RNG_SEED = 20240131


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    """Bills, limits and payments like the credit data: some zeros, negatives and missing values."""
    rng = np.random.default_rng(RNG_SEED)
    n = 500
    bill = rng.normal(50_000, 40_000, n).round()
    limit = rng.choice([0.0, 10_000.0, 50_000.0, 200_000.0], n)
    paid = rng.integers(0, 20_000, n).astype(float)
    pay0 = rng.integers(-2, 9, n).astype(float)
    bill[rng.choice(n, 20, replace=False)] = np.nan
    paid[rng.choice(n, 20, replace=False)] = np.nan
    return {"bill": bill, "limit": limit, "paid": paid, "pay0": pay0}


def _safe_divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, with NaN where b is 0 or either side is missing."""
    pairs = zip(a, b, strict=True)
    return np.array(
        [x / y if y != 0 and not np.isnan(x) and not np.isnan(y) else np.nan for x, y in pairs]
    )


_OPS = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


def _flag(a: np.ndarray, b: np.ndarray | float, op: str) -> np.ndarray:
    b = np.broadcast_to(b, a.shape)
    out = np.empty(a.shape)
    for i in range(len(a)):
        if np.isnan(a[i]) or np.isnan(b[i]):
            out[i] = np.nan
        else:
            out[i] = 1.0 if _OPS[op](float(a[i]), float(b[i])) else 0.0
    return out


def _rows(*arrays: np.ndarray) -> list[list[float]]:
    return [list(r) for r in zip(*arrays, strict=True)]


def _naive_max(*arrays: np.ndarray) -> np.ndarray:
    return np.array([np.nan if any(np.isnan(r)) else max(r) for r in _rows(*arrays)])


def _naive_min(*arrays: np.ndarray) -> np.ndarray:
    return np.array([np.nan if any(np.isnan(r)) else min(r) for r in _rows(*arrays)])


def _naive_sum(*arrays: np.ndarray) -> np.ndarray:
    return np.array([np.nan if any(np.isnan(r)) else sum(r) for r in _rows(*arrays)])


def _naive_mean(*arrays: np.ndarray) -> np.ndarray:
    return _naive_sum(*arrays) / len(arrays)


def _naive_log1p(a: np.ndarray) -> np.ndarray:
    return np.array([np.log1p(v) if v > -1 else np.nan for v in a])


REFERENCES = {
    "bill + paid": lambda d: d["bill"] + d["paid"],
    "bill - paid * 2": lambda d: d["bill"] - d["paid"] * 2,
    "(bill - paid) * 2": lambda d: (d["bill"] - d["paid"]) * 2,
    "bill / limit": lambda d: _safe_divide(d["bill"], d["limit"]),
    "-bill / 1000": lambda d: -d["bill"] / 1000,
    "+paid": lambda d: d["paid"],
    "-(bill - limit)": lambda d: -(d["bill"] - d["limit"]),
    "bill > limit": lambda d: _flag(d["bill"], d["limit"], ">"),
    "pay0 >= 1": lambda d: _flag(d["pay0"], 1.0, ">="),
    "pay0 < 0": lambda d: _flag(d["pay0"], 0.0, "<"),
    "pay0 <= -1": lambda d: _flag(d["pay0"], -1.0, "<="),
    "pay0 == -2": lambda d: _flag(d["pay0"], -2.0, "=="),
    "paid != 0": lambda d: _flag(d["paid"], 0.0, "!="),
    "max(bill, 0)": lambda d: _naive_max(d["bill"], np.zeros(len(d["bill"]))),
    "max(bill, paid, limit)": lambda d: _naive_max(d["bill"], d["paid"], d["limit"]),
    "min(bill, limit)": lambda d: _naive_min(d["bill"], d["limit"]),
    "mean(bill, paid, limit)": lambda d: _naive_mean(d["bill"], d["paid"], d["limit"]),
    "sum(pay0 > 0, paid == 0, bill > 0)": lambda d: _naive_sum(
        _flag(d["pay0"], 0.0, ">"), _flag(d["paid"], 0.0, "=="), _flag(d["bill"], 0.0, ">")
    ),
    "abs(bill)": lambda d: np.array([abs(v) for v in d["bill"]]),
    "log1p(paid)": lambda d: _naive_log1p(d["paid"]),
    "log1p(bill / 1000)": lambda d: _naive_log1p(d["bill"] / 1000),
    "paid / max(bill, 0)": lambda d: _safe_divide(
        d["paid"], _naive_max(d["bill"], np.zeros(len(d["bill"])))
    ),
    "(limit - bill) / limit": lambda d: _safe_divide(d["limit"] - d["bill"], d["limit"]),
    "2.5": lambda d: np.full((), 2.5),
}


@pytest.mark.parametrize("expression", list(REFERENCES))
def test_evaluate_matches_naive_reference(expression: str, data: dict[str, np.ndarray]) -> None:
    with np.errstate(all="ignore"):
        expected = REFERENCES[expression](data)
    got = evaluate(expression, data)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-12, equal_nan=True)


def test_references_exercise_zeros_missing_and_negatives(data: dict[str, np.ndarray]) -> None:
    """The fixture really holds the awkward cases the references are meant to cover."""
    assert (data["limit"] == 0).sum() > 50
    assert np.isnan(data["bill"]).sum() == 20
    assert (data["bill"] < 0).sum() > 10
    assert ((data["bill"] / 1000) < -1).sum() > 10


def test_division_by_zero_is_missing() -> None:
    got = evaluate(
        "a / b", {"a": np.array([1.0, 0.0, -3.0, 6.0]), "b": np.array([0.0, 0.0, 0.0, 2.0])}
    )
    np.testing.assert_array_equal(got, [np.nan, np.nan, np.nan, 3.0])


def test_comparisons_give_one_zero_or_missing() -> None:
    a = np.array([1.0, 2.0, np.nan, 3.0])
    b = np.array([2.0, 2.0, 1.0, np.nan])
    np.testing.assert_array_equal(evaluate("a < b", {"a": a, "b": b}), [1.0, 0.0, np.nan, np.nan])
    np.testing.assert_array_equal(evaluate("a == b", {"a": a, "b": b}), [0.0, 1.0, np.nan, np.nan])
    np.testing.assert_array_equal(evaluate("a != b", {"a": a, "b": b}), [1.0, 0.0, np.nan, np.nan])


def test_missing_propagates_through_arithmetic_and_functions() -> None:
    values = {"a": np.array([np.nan, 4.0]), "b": np.array([1.0, np.nan])}
    for expression in ("a + b", "max(a, b)", "min(a, b)", "mean(a, b)", "sum(a, b)", "abs(a) * b"):
        np.testing.assert_array_equal(
            evaluate(expression, values), [np.nan, np.nan], err_msg=expression
        )


def test_log1p_of_minus_one_or_less_is_missing() -> None:
    got = evaluate("log1p(a)", {"a": np.array([-1.0, -5.0, 0.0, np.e - 1])})
    np.testing.assert_allclose(got, [np.nan, np.nan, 0.0, 1.0], equal_nan=True)


def test_integer_input_is_computed_in_float() -> None:
    got = evaluate(
        "a / b", {"a": np.array([1, 7], dtype=np.int64), "b": np.array([2, 2], dtype=np.int64)}
    )
    np.testing.assert_array_equal(got, [0.5, 3.5])
    assert got.dtype == np.float64


def test_columns_in_order_of_first_use_without_function_names() -> None:
    assert columns("max(PAY_AMT1, BILL_AMT2) / LIMIT_BAL + PAY_AMT1") == [
        "PAY_AMT1",
        "BILL_AMT2",
        "LIMIT_BAL",
    ]
    assert columns("sum(a > 0, log1p(b), abs(a))") == ["a", "b"]
    assert columns("3 * 2") == []
    assert columns("a + (b * (c - d))") == ["a", "b", "c", "d"]
    assert columns("(d * (c - b)) + a") == ["d", "c", "b", "a"]
    assert columns("(x / y\n+ max(w, x))") == ["x", "y", "w"]


def test_columns_named_like_a_function_are_still_columns_when_not_called() -> None:
    assert columns("max + mean(x)") == ["max", "x"]


@pytest.mark.parametrize(
    ("expression", "what"),
    [
        ("x.__class__", "Attribute"),
        ("__import__('os')", "Call"),
        ("__import__('os').system('true')", "Call"),
        ("lambda: 1", "Lambda"),
        ("'abc'", "Constant"),
        ("x + 'a'", "Constant"),
        ("x[0]", "Subscript"),
        ("max(x, key=y)", "Call"),
        ("max()", "Call"),
        ("a < b < c", "Compare"),
        ("exp(x)", "Call"),
        ("eval('1')", "Call"),
        ("x ** 2", "Pow"),
        ("x // 2", "FloorDiv"),
        ("x % 2", "Mod"),
        ("True + x", "Constant"),
        ("not x", "Not"),
        ("x and y", "BoolOp"),
        ("x if y else z", "IfExp"),
        ("[x, y]", "List"),
        ("(x := 1)", "NamedExpr"),
    ],
)
def test_constructs_outside_the_language_are_refused(expression: str, what: str) -> None:
    with pytest.raises(
        SpecError, match=rf"'{re.escape(expression)}' uses {what}.*which is not accepted; accepted:"
    ):
        parse(expression, where="features.derived.f")
    with pytest.raises(SpecError, match="is not accepted"):
        evaluate(expression, {"x": np.ones(2), "y": np.ones(2), "a": np.ones(2), "b": np.ones(2)})
    with pytest.raises(SpecError, match="is not accepted"):
        columns(expression)


def test_syntax_error_names_where_and_what_is_accepted() -> None:
    with pytest.raises(
        SpecError,
        match=r"^features\.derived\.f: 'a \+' is not a valid expression .*accepted: column",
    ):
        parse("a +", where="features.derived.f")


def test_parse_accepts_the_whole_language() -> None:
    tree = parse(
        "-max(a, 1) + min(b, 2.5) * mean(a, b) / sum(a, b) - abs(a) + log1p(b) + (a >= b) + +a"
    )
    assert tree.body is not None


# --- offline == online: one row at a time equals the whole batch ----------------------------------

_LEAVES = st.sampled_from(["a", "b", "c", "0", "1", "2.5", "1000"])


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.tuples(
        children, st.sampled_from(["+", "-", "*", "/", ">", ">=", "<", "<=", "==", "!="]), children
    )
    # Up to 10 arguments: numpy sums 8 or more values pairwise unless told otherwise.
    call = st.tuples(
        st.sampled_from(["max", "min", "mean", "sum"]), st.lists(children, min_size=1, max_size=10)
    )
    unary = st.tuples(st.sampled_from(["abs", "log1p"]), children)
    return st.one_of(
        binary.map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        call.map(lambda t: f"{t[0]}({', '.join(t[1])})"),
        unary.map(lambda t: f"{t[0]}({t[1]})"),
        children.map(lambda c: f"(-{c})"),
    )


EXPRESSIONS = st.recursive(_LEAVES, _combine, max_leaves=8)
VALUES = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.sampled_from([0.0, -1.0, 1.0, np.nan]),
)


@settings(max_examples=200, deadline=None)
@given(
    expression=EXPRESSIONS,
    rows=st.lists(st.tuples(VALUES, VALUES, VALUES), min_size=1, max_size=12),
)
def test_row_by_row_equals_batch(expression: str, rows: list[tuple[float, float, float]]) -> None:
    """A table, a one-row table and one row of floats (the request path) give the same number."""
    batch = {name: np.array([r[i] for r in rows]) for i, name in enumerate("abc")}
    offline = np.broadcast_to(evaluate(expression, batch), (len(rows),))
    row_function = compile_row(expression)
    for i, row in enumerate(rows):
        online = evaluate(expression, {name: np.array([row[j]]) for j, name in enumerate("abc")})
        assert online.size == 1
        np.testing.assert_array_equal(
            online.reshape(()), offline[i], err_msg=f"{expression} at row {i}"
        )
        one = row_function(dict(zip("abc", row, strict=True)))
        assert isinstance(one, float)
        np.testing.assert_array_equal(
            one, offline[i], err_msg=f"{expression} as one row of floats, row {i}"
        )


def test_a_long_sum_adds_left_to_right_in_a_table_and_in_one_row() -> None:
    values = [1e16, 1.0, -1e16, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]  # the order changes the answer
    expression = "sum(" + ", ".join(f"c{i}" for i in range(10)) + ")"
    table = evaluate(expression, {f"c{i}": np.array([v, v]) for i, v in enumerate(values)})
    one = compile_row(expression)({f"c{i}": v for i, v in enumerate(values)})
    left_to_right = ((((((((1e16 + 1.0) - 1e16) + 1.0) + 1.0) + 1.0) + 1.0) + 1.0) + 1.0) + 1.0
    assert list(table) == [one, one] == [left_to_right, left_to_right]
    assert np.sum(values) != left_to_right  # numpy's pairwise sum would differ
