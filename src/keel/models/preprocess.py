"""Turn a contract-typed frame into the float matrix every model family reads.

Numeric columns pass through as float64 (missing stays NaN). Categorical columns
become integer codes of the categories seen in training (unseen or missing: NaN),
so the mapping is data, stored as JSON beside the model. Derived features are
computed from their spec expressions, for a table or for one row alike.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import DataError
from keel.expressions import columns as columns_of
from keel.expressions import compile_row, evaluate


@dataclass
class Preprocessor:
    """Maps named columns to a float matrix; learned state ends in ``_``."""

    features: list[str]
    categorical: list[str] = field(default_factory=list)
    derived: dict[str, str] = field(default_factory=dict)
    categories_: dict[str, list[str]] = field(default_factory=dict)

    def fit(self, frame: pd.DataFrame) -> Preprocessor:
        """Learn the categories of each categorical column, sorted for reproducibility."""
        self._check_columns(frame)
        self.__dict__.pop("_row_plan", None)
        self.categories_ = {
            c: sorted({_category(v) for v in frame[c].dropna().unique()}) for c in self.categorical
        }
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """The model matrix, one float64 column per feature in ``features`` order."""
        self._check_columns(frame)
        return self.transform_columns({c: frame[c].to_numpy() for c in self.inputs()}, len(frame))

    def transform_records(self, records: list[dict[str, Any]]) -> np.ndarray:
        """The model matrix for JSON-like records (a missing key or None is a missing value).

        A record is computed with plain floats (the request path: numpy's per-call cost on
        one-element arrays dominated it); tests hold it equal to :meth:`transform`, row by row.
        """
        plan = self._row_plan
        out = np.empty((len(records), len(self.features)), dtype=np.float64)
        for i, record in enumerate(records):
            numbers = {c: _number(c, record.get(c)) for c in plan.numeric}
            out[i] = [
                numbers[step]
                if kind == "number"
                else step(numbers)
                if kind == "derived"
                else _code(step, record.get(name))
                for name, kind, step in plan.steps
            ]
        return out

    @functools.cached_property
    def _row_plan(self) -> _RowPlan:
        """How each feature of one record is computed; built on first use after :meth:`fit`."""
        steps: list[tuple[str, str, Any]] = []
        numeric: dict[str, None] = {}
        for name in self.features:
            if name in self.derived:
                numeric.update(dict.fromkeys(columns_of(self.derived[name])))
                steps.append((name, "derived", compile_row(self.derived[name])))
            elif name in self.categorical:
                steps.append((name, "category", _codes(self.categories_[name])))
            else:
                numeric[name] = None
                steps.append((name, "number", name))
        return _RowPlan(tuple(numeric), tuple(steps))

    def transform_columns(self, columns: dict[str, np.ndarray], rows: int) -> np.ndarray:
        """The model matrix from one array per input column."""
        numbers = {c: _numbers(c, v) for c, v in columns.items() if c not in self.categorical}
        out = np.empty((rows, len(self.features)), dtype=np.float64)
        for j, name in enumerate(self.features):
            if name in self.derived:
                expression = self.derived[name]
                inputs = columns_of(expression)
                out[:, j] = evaluate(
                    expression,
                    {c: numbers[c] if c in numbers else _numbers(c, columns[c]) for c in inputs},
                )
            elif name in self.categorical:
                codes = _codes(self.categories_[name])
                out[:, j] = [_code(codes, v) for v in columns[name]]
            else:
                out[:, j] = numbers[name]
        return out

    def categorical_indices(self) -> list[int]:
        """Positions of the categorical features in the matrix."""
        return [j for j, name in enumerate(self.features) if name in self.categorical]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, enough to rebuild the fitted preprocessor."""
        return {
            "features": self.features,
            "categorical": self.categorical,
            "derived": self.derived,
            "categories": self.categories_,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessor:
        """Rebuild a fitted preprocessor from :meth:`to_dict` output."""
        return cls(
            list(data["features"]),
            list(data["categorical"]),
            dict(data.get("derived", {})),
            {k: list(v) for k, v in data["categories"].items()},
        )

    def inputs(self) -> list[str]:
        """The raw columns a caller must supply, in first-use order."""
        needed: dict[str, None] = {}
        for name in self.features:
            for col in columns_of(self.derived[name]) if name in self.derived else [name]:
                needed.setdefault(col, None)
        return list(needed)

    def _check_columns(self, frame: pd.DataFrame) -> None:
        missing = [c for c in self.inputs() if c not in frame.columns]
        if missing:
            raise DataError(f"input lacks column(s) {missing}; the model reads {self.inputs()}")


@dataclass(frozen=True)
class _RowPlan:
    numeric: tuple[
        str, ...
    ]  # input columns read as numbers (raw features and derived-feature inputs)
    steps: tuple[
        tuple[str, str, Any], ...
    ]  # per feature: name, kind, column / function / category codes


def _not_a_date(name: str, value: Any) -> None:
    """Refuse a date or time read as a number (its float would count nanoseconds).

    The message names the column, never the value: a date of birth is personal data.
    """
    if isinstance(value, (dt.date, np.datetime64)):
        raise DataError(
            f"column '{name}' holds dates or times, which a model does not read as numbers; "
            "exclude it (features.exclude), or derive calendar parts of the time column "
            "(features.calendar)"
        )


def _number(name: str, value: Any) -> float:
    """One input value as a float (missing: NaN); the row counterpart of :func:`_numbers`."""
    if value is None or value is pd.NaT:
        return math.nan
    _not_a_date(name, value)
    try:
        return float(value) if isinstance(value, (int, float)) or not _missing(value) else math.nan
    except (TypeError, ValueError) as err:
        raise DataError(f"column '{name}' must be numeric: {err}") from err


def _codes(categories: list[str]) -> dict[str, float]:
    """Each learned category's code: its position in the sorted list."""
    return {v: float(i) for i, v in enumerate(categories)}


def _code(codes: dict[str, float], value: Any) -> float:
    """A category's code (unseen or missing: NaN)."""
    return math.nan if _missing(value) else codes.get(_category(value), math.nan)


def _category(value: Any) -> str:
    """A category's key: integral floats read as integers.

    So ``2.0`` (an int column with NaN) is ``'2'``.
    """
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _missing(value: Any) -> bool:
    return value is None or bool(pd.isna(value))


def _numbers(name: str, column: np.ndarray) -> np.ndarray:
    """Float64 values of an input column (None, NA and NaN: NaN).

    A value that is not a number names its column.
    """
    if column.dtype.kind in "biuf":
        return column.astype(np.float64)
    if column.dtype.kind == "M":
        _not_a_date(name, np.datetime64("NaT"))
    return np.array([_number(name, v) for v in column], dtype=np.float64)
