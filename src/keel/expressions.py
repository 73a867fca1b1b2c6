"""A small, safe arithmetic language for derived features, e.g. ``BILL_AMT1 / LIMIT_BAL``.

Expressions are parsed with :mod:`ast` and only a whitelist of nodes is accepted:
column names, numbers, ``+ - * /``, unary minus, one comparison (giving 1.0 or 0.0)
and the row-wise functions below. The text a user wrote is never evaluated: tables are
computed by walking the checked tree, and one row by a Python function that Keel writes
from that tree (row lookups by quoted name, constants by reference, operators and the
functions below only). A property test holds the two equal, so training and serving agree.
Division by zero gives NaN (missing), which every model family accepts.
"""

from __future__ import annotations

import ast
import functools
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from keel.errors import SpecError

_BINARY: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: lambda a, b: np.divide(
        a, b, out=np.full(np.broadcast(a, b).shape, np.nan), where=b != 0
    ),
}
_COMPARE: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}


def _nan_or(reduce: Callable[..., float]) -> Callable[..., float]:
    """A reduction over one row's values: NaN when any value is missing, as numpy's is."""

    def apply(*args: float) -> float:
        return math.nan if any(a != a for a in args) else reduce(args)

    return apply


def _fold(ufunc: np.ufunc) -> Callable[..., np.ndarray]:
    """Combine the arguments left to right, so a row gives the same bits alone or in a batch."""

    def apply(*args: np.ndarray) -> np.ndarray:
        return functools.reduce(ufunc, np.broadcast_arrays(*args))

    return apply


def _sequential_sum(values: tuple[float, ...]) -> float:
    total = values[0]
    for value in values[1:]:
        total += value
    return total


def _log1p(a: np.ndarray) -> np.ndarray:
    return np.log1p(np.where(a > -1, a, np.nan))


def _log1p_one(value: float) -> float:
    # The same ufunc loop as a table's column: libm and numpy's SIMD log1p may differ in the
    # last bit.
    return float(_log1p(np.array([value]))[0])


# Each function twice: over arrays (a table) and over one row's floats (a request); the
# two must give the same number for the same row, which tests/test_expressions.py checks.
FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "max": _fold(np.maximum),
    "min": _fold(np.minimum),
    "mean": lambda *args: _fold(np.add)(*args) / len(args),
    "sum": _fold(np.add),
    "abs": np.abs,
    "log1p": _log1p,
}
ROW_FUNCTIONS: dict[str, Callable[..., float]] = {
    "max": _nan_or(max),
    "min": _nan_or(min),
    "mean": _nan_or(lambda values: _sequential_sum(values) / len(values)),
    "sum": _nan_or(_sequential_sum),
    "abs": abs,
    "log1p": _log1p_one,
}
ACCEPTED = "column names, numbers, + - * /, one comparison (> >= < <= == !=) and " + ", ".join(
    FUNCTIONS
)


def parse(expression: str, *, where: str = "expression") -> ast.Expression:
    """Parse and check an expression; anything outside the language is a SpecError.

    Trees are cached (and never changed by their readers): scoring one row evaluates every
    derived feature, and parsing dominated that.
    """
    return _parse(expression, where)


@functools.lru_cache(maxsize=4096)
def _parse(expression: str, where: str) -> ast.Expression:
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as err:
        raise SpecError(
            f"{where}: '{expression}' is not a valid expression ({err.msg}); accepted: {ACCEPTED}"
        ) from None
    for node in ast.walk(tree):
        allowed = isinstance(
            node,
            (
                ast.Expression,
                ast.BinOp,
                ast.UnaryOp,
                ast.Name,
                ast.Load,
                ast.Compare,
                ast.Call,
                ast.USub,
                ast.UAdd,
                *_BINARY,
                *_COMPARE,
            ),
        )
        if isinstance(node, ast.Constant):
            allowed = isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
        if isinstance(node, ast.Call):
            allowed = (
                isinstance(node.func, ast.Name)
                and node.func.id in FUNCTIONS
                and not node.keywords
                and bool(node.args)
            )
        if isinstance(node, ast.Compare):
            allowed = len(node.ops) == 1
        if not allowed:
            raise SpecError(
                f"{where}: '{expression}' uses {ast.dump(node)[:60]}, which is not accepted; "
                f"accepted: {ACCEPTED}"
            )
    return tree


def columns(expression: str) -> list[str]:
    """The column names an expression reads, in order of first use."""
    return list(_columns(expression))


@functools.lru_cache(maxsize=4096)
def _columns(expression: str) -> tuple[str, ...]:
    tree = parse(expression)
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    names = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in called]
    names.sort(
        key=lambda n: (n.lineno, n.col_offset)
    )  # ast.walk is breadth-first, not source order
    return tuple(dict.fromkeys(n.id for n in names))


def evaluate(expression: str, values: Mapping[str, np.ndarray]) -> np.ndarray:
    """Compute an expression over float arrays of equal length (one entry for one row)."""
    tree = parse(expression)

    def walk(node: ast.AST) -> np.ndarray:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return np.asarray(float(node.value))
        if isinstance(node, ast.Name):
            return np.asarray(values[node.id], dtype=np.float64)
        if isinstance(node, ast.UnaryOp):
            operand = walk(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp):
            left, right = np.broadcast_arrays(walk(node.left), walk(node.right))
            return _BINARY[type(node.op)](left, right)
        if isinstance(node, ast.Compare):
            left, right = walk(node.left), walk(node.comparators[0])
            result = _COMPARE[type(node.ops[0])](left, right).astype(np.float64)
            return np.where(np.isnan(left) | np.isnan(right), np.nan, result)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return FUNCTIONS[node.func.id](*[walk(a) for a in node.args])
        raise SpecError(f"cannot evaluate {ast.dump(node)[:60]}")  # unreachable after parse()

    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return np.asarray(walk(tree), dtype=np.float64)


def compile_row(expression: str) -> Callable[[Mapping[str, float]], float]:
    """The expression as a function of one row's floats (NaN for missing).

    It gives what :func:`evaluate` gives that row.

    Scoring one request evaluates every derived feature; numpy's per-call overhead on
    one-element arrays made that the slowest step, so requests use plain floats instead.
    """
    return _compile_row(expression)


@functools.lru_cache(maxsize=4096)
def _compile_row(expression: str) -> Callable[[Mapping[str, float]], float]:
    constants: list[Any] = []
    source = _row_source(parse(expression).body, constants)
    namespace: dict[str, Any] = {
        "__builtins__": {},
        "_divide": _divide_one,
        "_flag": _flag_one,
        "_nan": math.nan,
        **{f"_{name}": function for name, function in ROW_FUNCTIONS.items()},
        **{f"_c{i}": value for i, value in enumerate(constants)},
    }
    # Written from the checked tree (never from the user's text): a third of the time of nested
    # closures.
    return eval(compile(f"lambda row: {source}", f"<derived: {expression}>", "eval"), namespace)  # noqa: S307


def _row_source(node: ast.AST, constants: list[Any]) -> str:
    """Python source computing ``node`` over ``row``, a mapping of column name to float.

    Numbers and comparison functions are passed by reference (``_c0``, ``_c1``, ...), never as text.
    """
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        constants.append(float(node.value))
        return f"_c{len(constants) - 1}"
    if isinstance(node, ast.Name):
        return f"row[{node.id!r}]"
    if isinstance(node, ast.UnaryOp):
        operand = _row_source(node.operand, constants)
        return f"(-{operand})" if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp):
        left, right = _row_source(node.left, constants), _row_source(node.right, constants)
        if isinstance(node.op, ast.Div):
            return f"_divide({left}, {right})"
        return f"({left} {_ROW_OPERATORS[type(node.op)]} {right})"
    if isinstance(node, ast.Compare):
        left, right = _row_source(node.left, constants), _row_source(node.comparators[0], constants)
        constants.append(_COMPARE[type(node.ops[0])])
        return f"_flag({left}, {right}, _c{len(constants) - 1})"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return f"_{node.func.id}({', '.join(_row_source(a, constants) for a in node.args)})"
    raise SpecError(f"cannot evaluate {ast.dump(node)[:60]}")  # unreachable after parse()


_ROW_OPERATORS: dict[type, str] = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*"}


def _divide_one(a: float, b: float) -> float:
    return a / b if b != 0 else math.nan


def _flag_one(a: float, b: float, compare: Callable[[float, float], bool]) -> float:
    return math.nan if a != a or b != b else float(compare(a, b))
