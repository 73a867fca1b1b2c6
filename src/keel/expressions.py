"""A small, safe arithmetic language for derived features, e.g. ``BILL_AMT1 / LIMIT_BAL``.

Expressions are parsed with :mod:`ast` and only a whitelist of nodes is accepted:
column names, numbers, ``+ - * /``, unary minus, one comparison (giving 1.0 or 0.0)
and the row-wise functions below. Nothing is ever passed to ``eval``. The same code
computes a feature for a whole table or for a single row, so training and serving agree.
Division by zero gives NaN (missing), which every model family accepts.
"""

from __future__ import annotations

import ast
import functools
import math
import operator
from collections.abc import Callable, Mapping

import numpy as np

from keel.errors import SpecError

_BINARY: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: lambda a, b: np.divide(a, b, out=np.full(np.broadcast(a, b).shape, np.nan), where=b != 0),
}
_COMPARE: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Lt: operator.lt,
    ast.LtE: operator.le, ast.Eq: operator.eq, ast.NotEq: operator.ne,
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
    # The same ufunc loop as a table's column: libm and numpy's SIMD log1p may differ in the last bit.
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
ACCEPTED = "column names, numbers, + - * /, one comparison (> >= < <= == !=) and " + ", ".join(FUNCTIONS)


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
        raise SpecError(f"{where}: '{expression}' is not a valid expression ({err.msg}); accepted: {ACCEPTED}") from None
    for node in ast.walk(tree):
        allowed = isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Name, ast.Load, ast.Compare, ast.Call,
                                    ast.USub, ast.UAdd, *_BINARY, *_COMPARE))
        if isinstance(node, ast.Constant):
            allowed = isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
        if isinstance(node, ast.Call):
            allowed = isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS and not node.keywords and bool(node.args)
        if isinstance(node, ast.Compare):
            allowed = len(node.ops) == 1
        if not allowed:
            raise SpecError(f"{where}: '{expression}' uses {ast.dump(node)[:60]}, which is not accepted; accepted: {ACCEPTED}")
    return tree


def columns(expression: str) -> list[str]:
    """The column names an expression reads, in order of first use."""
    return list(_columns(expression))


@functools.lru_cache(maxsize=4096)
def _columns(expression: str) -> tuple[str, ...]:
    tree = parse(expression)
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    names = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in called]
    names.sort(key=lambda n: (n.lineno, n.col_offset))  # ast.walk is breadth-first, not source order
    return tuple(dict.fromkeys(n.id for n in names))


def evaluate(expression: str, values: Mapping[str, np.ndarray]) -> np.ndarray:
    """Compute an expression over float arrays of equal length (one entry for one row)."""
    tree = parse(expression)

    def walk(node: ast.AST) -> np.ndarray:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant):
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
        if isinstance(node, ast.Call):
            return FUNCTIONS[node.func.id](*[walk(a) for a in node.args])
        raise SpecError(f"cannot evaluate {ast.dump(node)[:60]}")  # unreachable after parse()

    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return np.asarray(walk(tree), dtype=np.float64)


def compile_row(expression: str) -> Callable[[Mapping[str, float]], float]:
    """The expression as a function of one row's floats (NaN for missing): what :func:`evaluate` gives that row.

    Scoring one request evaluates every derived feature; numpy's per-call overhead on
    one-element arrays made that the slowest step, so requests use plain floats instead.
    """
    return _compile_row(expression)


@functools.lru_cache(maxsize=4096)
def _compile_row(expression: str) -> Callable[[Mapping[str, float]], float]:
    return _row_closure(parse(expression).body)


def _row_closure(node: ast.AST) -> Callable[[Mapping[str, float]], float]:
    if isinstance(node, ast.Constant):
        constant = float(node.value)
        return lambda row: constant
    if isinstance(node, ast.Name):
        key = node.id
        return lambda row: row[key]
    if isinstance(node, ast.UnaryOp):
        operand = _row_closure(node.operand)
        return (lambda row: -operand(row)) if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp):
        left, right = _row_closure(node.left), _row_closure(node.right)
        if isinstance(node.op, ast.Div):
            def divide(row: Mapping[str, float]) -> float:
                denominator = right(row)
                return left(row) / denominator if denominator != 0 else math.nan
            return divide
        op = _BINARY[type(node.op)]
        return lambda row: op(left(row), right(row))
    if isinstance(node, ast.Compare):
        left, right, compare = _row_closure(node.left), _row_closure(node.comparators[0]), _COMPARE[type(node.ops[0])]

        def flag(row: Mapping[str, float]) -> float:
            a, b = left(row), right(row)
            return math.nan if a != a or b != b else float(compare(a, b))
        return flag
    if isinstance(node, ast.Call):
        function, args = ROW_FUNCTIONS[node.func.id], [_row_closure(a) for a in node.args]
        return lambda row: function(*[a(row) for a in args])
    raise SpecError(f"cannot evaluate {ast.dump(node)[:60]}")  # unreachable after parse()
