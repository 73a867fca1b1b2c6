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


def _rowwise(reduce: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    def apply(*args: np.ndarray) -> np.ndarray:
        stacked = np.vstack(np.broadcast_arrays(*args))
        return reduce(stacked, axis=0)

    return apply


FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "max": _rowwise(np.max),
    "min": _rowwise(np.min),
    "mean": _rowwise(np.mean),
    "sum": _rowwise(np.sum),
    "abs": np.abs,
    "log1p": lambda a: np.log1p(np.where(a > -1, a, np.nan)),
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
