"""Profile a table Keel has never seen and draft a starter spec for it (``keel init``).

:func:`profile_table` reads nothing: it summarizes a DataFrame the caller loaded.
:func:`starter_spec` turns the profile into a plain dict that :func:`keel.spec.parse_spec`
accepts, and :func:`render_spec_yaml` writes it as YAML under a review checklist.
Everything is deterministic: the same table gives byte-identical YAML.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import yaml

from keel.errors import DataError, did_you_mean
from keel.spec import DataSpec

TOP_VALUES = 10
MAX_ALLOWED = 20  # int/str columns with at most this many values get an `allowed` list
MAX_CATEGORIES = 50  # str columns with more distinct values are excluded from the features
_TARGET_WORDS = ("target", "label", "default", "fraud", "churn", "class", "outcome")
_ID_TOKENS = {"id", "ids", "key", "uuid", "guid"}
_NOT_ID = {
    "paid",
    "unpaid",
    "prepaid",
    "valid",
    "invalid",
    "rapid",
    "solid",
    "fluid",
    "liquid",
    "humid",
    "hybrid",
    "acid",
    "grid",
    "bid",
    "covid",
    "void",
    "mid",
    "aid",
    "raid",
    "said",
}
_ISO_DATE = r"\d{4}-\d{2}"  # extended ISO 8601 only: bare '2024' or '20240101' stay text


@dataclass(frozen=True)
class ColumnProfile:
    """What one column holds: its spec dtype, missingness, cardinality and common values.

    ``distinct_values`` lists every non-null value, sorted, when there are at most
    ``MAX_ALLOWED`` of them (``None`` otherwise); ``top_values`` is ordered by frequency.
    """

    name: str
    dtype: str
    missing_rate: float
    n_unique: int
    min: float | None
    max: float | None
    top_values: list[Any]
    is_integral_float: bool = False
    distinct_values: list[Any] | None = None


@dataclass(frozen=True)
class TableProfile:
    """A profiled table: its columns and the columns that look like id, target and time."""

    rows: int
    columns: list[ColumnProfile]
    id_candidates: list[str]
    target_candidates: list[str]
    time_candidates: list[str]

    def column(self, name: str) -> ColumnProfile:
        """The profile of column ``name``."""
        for col in self.columns:
            if col.name == name:
                return col
        names = [c.name for c in self.columns]
        raise DataError(f"no column '{name}' in the profiled table.{did_you_mean(name, names)}")


def _is_whole(values: pd.Series) -> bool:
    floats = values.to_numpy(dtype="float64")
    return bool(len(floats)) and bool(
        np.isfinite(floats).all() and (floats == np.floor(floats)).all()
    )


def _classify(series: pd.Series) -> tuple[str, pd.Series, bool]:
    """The spec dtype, the non-null values in that dtype's form, and is_integral_float."""
    present = series.dropna()
    if pd.api.types.is_bool_dtype(series):
        return "bool", present.astype(bool), False
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime", present, False
    if pd.api.types.is_integer_dtype(series):
        return "int", present.astype("int64"), False
    if pd.api.types.is_float_dtype(series):
        if _is_whole(present):
            return "int", present.astype("int64"), True
        return "float", present.astype("float64"), False
    if isinstance(series.dtype, pd.CategoricalDtype):
        return _classify(present.astype(object))
    if pd.api.types.is_object_dtype(series):
        return _classify_objects(present)
    if pd.api.types.is_string_dtype(series):
        return _classify_text(present)
    return "str", present.astype(str), False


def _classify_objects(present: pd.Series) -> tuple[str, pd.Series, bool]:
    kind = pd.api.types.infer_dtype(present, skipna=True)
    if kind == "boolean":
        return "bool", present.astype(bool), False
    if kind == "integer":
        return "int", present.astype("int64"), False
    if kind in ("floating", "mixed-integer-float", "decimal"):
        return _classify(pd.to_numeric(present).astype("float64"))
    if kind in ("datetime64", "datetime", "date"):
        try:
            return "datetime", pd.to_datetime(present), False
        except (ValueError, TypeError):
            return "str", present.astype(str), False
    if kind == "string":
        return _classify_text(present)
    return "str", present.astype(str), False


def _classify_text(present: pd.Series) -> tuple[str, pd.Series, bool]:
    text = present.astype(str)
    if len(text) and text.str.match(_ISO_DATE).all():
        try:
            return "datetime", pd.to_datetime(text, format="ISO8601"), False
        except (ValueError, TypeError, OverflowError):
            pass
    return "str", text, False


def _plain(value: Any) -> Any:
    """A numpy or pandas scalar as a plain Python value (timestamps as ISO 8601 text)."""
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _profile_column(name: str, series: pd.Series, rows: int) -> ColumnProfile:
    dtype, values, integral = _classify(series)
    counts = values.value_counts(sort=False)
    ranked = sorted(((int(n), _plain(v)) for v, n in counts.items()), key=lambda p: (-p[0], p[1]))
    numeric = dtype in ("int", "float") and len(values)
    return ColumnProfile(
        name=name,
        dtype=dtype,
        missing_rate=(rows - len(values)) / rows if rows else 0.0,
        n_unique=len(counts),
        min=float(values.min()) if numeric else None,
        max=float(values.max()) if numeric else None,
        top_values=[v for _, v in ranked[:TOP_VALUES]],
        is_integral_float=integral,
        distinct_values=sorted(v for _, v in ranked) if len(ranked) <= MAX_ALLOWED else None,
    )


def _tokens(name: str) -> list[str]:
    return [t.lower() for t in re.split(r"[^0-9A-Za-z]+|(?<=[a-z])(?=[A-Z])", name) if t]


def _looks_like_id(name: str) -> bool:
    """Whether ``name`` reads as an id column.

    True for ``id``, ``customer_id``, ``CustomerID``, ``loanid``, ``row_key``; false for
    ``paid`` or ``valid``.
    """
    return any(t in _ID_TOKENS or (t.endswith("id") and t not in _NOT_ID) for t in _tokens(name))


def _is_id(col: ColumnProfile, series: pd.Series, rows: int) -> bool:
    if col.dtype not in ("int", "str") or rows == 0 or col.missing_rate > 0 or col.n_unique != rows:
        return False
    if _looks_like_id(col.name):
        return True
    return col.dtype == "int" and rows > 2 and bool(series.is_monotonic_increasing)


def _target_rank(name: str, position: int) -> tuple[bool, int]:
    lowered = name.lower()
    named = any(w in lowered for w in _TARGET_WORDS) or "y" in _tokens(name)
    return (not named, -position)


def profile_table(df: pd.DataFrame) -> TableProfile:
    """Summarize every column of ``df`` and name the likely id, target and time columns."""
    names = [str(c) for c in df.columns]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise DataError(f"column names must be unique, but these repeat: {', '.join(duplicated)}")
    rows = len(df)
    columns = [_profile_column(name, df.iloc[:, i], rows) for i, name in enumerate(names)]
    ids = [c.name for i, c in enumerate(columns) if _is_id(c, df.iloc[:, i], rows)]
    binary = [
        (i, c.name)
        for i, c in enumerate(columns)
        if c.n_unique == 2 and c.dtype != "datetime" and c.name not in ids
    ]
    targets = [name for i, name in sorted(binary, key=lambda p: _target_rank(p[1], p[0]))]
    times = [c.name for c in columns if c.dtype == "datetime"]
    return TableProfile(
        rows=rows,
        columns=columns,
        id_candidates=ids,
        target_candidates=targets,
        time_candidates=times,
    )


def _choose_target(profile: TableProfile, target: str | None) -> ColumnProfile:
    names = [c.name for c in profile.columns]
    if target is None:
        if not profile.target_candidates:
            raise DataError(
                "cannot choose a target: no column has exactly 2 distinct values "
                f"(columns seen: {', '.join(names)}); pass --target COLUMN"
            )
        return profile.column(profile.target_candidates[0])
    if target not in names:
        raise DataError(
            f"--target '{target}' is not a column of the data.{did_you_mean(target, names)} "
            f"Columns seen: {', '.join(names)}."
        )
    col = profile.column(target)
    if col.n_unique != 2:
        shown = ", ".join(repr(v) for v in col.top_values) + (
            ", ..." if col.n_unique > TOP_VALUES else ""
        )
        raise DataError(
            f"target '{target}' must have exactly 2 distinct values, "
            f"but has {col.n_unique}: [{shown}]"
        )
    return col


def _positive(col: ColumnProfile) -> Any:
    """The larger value of a numeric or bool target, else the less frequent one."""
    if col.dtype in ("int", "float", "bool"):
        return max(col.top_values)
    return col.top_values[1]


def _contract_entry(col: ColumnProfile, *, is_id: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"dtype": col.dtype, "nullable": col.missing_rate > 0}
    if is_id:
        entry["unique"] = True
    if col.dtype in ("int", "float") and col.min is not None and col.max is not None and not is_id:
        cast = int if col.dtype == "int" else float
        entry["min"], entry["max"] = cast(col.min), cast(col.max)
    if col.dtype in ("int", "str") and col.distinct_values and not is_id:
        entry["allowed"] = list(col.distinct_values)
    entry["description"] = f"observed {col.missing_rate:.1%} missing, {col.n_unique} distinct"
    return entry


def starter_spec(
    profile: TableProfile, *, source: str, project: str, target: str | None = None
) -> dict:
    """A starter spec as a plain dict for :func:`keel.spec.parse_spec`; review it before use.

    Raises :class:`~keel.errors.DataError` when no target can be chosen, when ``target``
    is not a column, or when the target does not hold exactly two values.
    """
    goal = _choose_target(profile, target)
    id_column = next((c for c in profile.id_candidates if c != goal.name), None)
    time_column = next((c for c in profile.time_candidates if c != goal.name), None)
    data: dict[str, Any] = {"source": source, "format": DataSpec(source=source).file_format()}
    if id_column:
        data["id_column"] = id_column
    if time_column:
        data["time_column"] = time_column
    data["duplicates"] = "drop"
    text = [c for c in profile.columns if c.dtype == "str" and c.name not in (goal.name, id_column)]
    return {
        "project": project,
        "description": "Starter spec generated by `keel init` from the observed data; "
        "review every entry before use.",
        "seed": 42,
        "data": data,
        "contract": {
            "columns": {
                c.name: _contract_entry(c, is_id=c.name == id_column) for c in profile.columns
            }
        },
        "target": {"column": goal.name, "positive": _positive(goal)},
        "protected": [],
        "features": {
            "categorical": [c.name for c in text if c.n_unique <= MAX_CATEGORIES],
            "exclude": [c.name for c in text if c.n_unique > MAX_CATEGORIES],
        },
        "split": {"method": "time" if time_column else "stratified"},
        "tuning": {"trials": 20},
    }


def _commented(text: object) -> str:
    """``text`` as it may stand inside a YAML comment: a name holding a line break or any other
    unprintable character is shown escaped, so it can never end the comment and start YAML."""
    shown = str(text)
    return shown if shown.isprintable() else json.dumps(shown)


def render_spec_yaml(spec: dict, profile: TableProfile) -> str:
    """The spec as YAML under a comment block of what to review; deterministic (no dates).

    The body is written by the YAML serializer; names in the comments pass through
    :func:`_commented` (a column named with a newline once injected YAML here).
    """
    target = spec["target"]
    data = spec["data"]
    header = [
        f"# Starter spec generated by `keel init` from {_commented(data['source'])}",
        f"# ({profile.rows} rows, {len(profile.columns)} columns). Review before training:",
        "#   - declare protected attributes (e.g. age, sex, race) under `protected:`;",
        "#     they never become model features.",
        f"#   - target {_commented(target['column'])!r}: "
        f"positive class taken as {target['positive']!r};",
        "#     confirm it is the adverse outcome the model should score.",
        "#   - contract min/max and allowed values were taken from the observed data;",
        "#     widen them to what valid future data may hold.",
        f"#   - id column: {_commented(data.get('id_column', 'none found'))}; "
        f"time column: {_commented(data.get('time_column', 'none found'))}.",
    ]
    if spec["features"]["exclude"]:
        names = ", ".join(_commented(name) for name in spec["features"]["exclude"])
        header.append(f"#   - excluded as high-cardinality text: {names}.")
    body = yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, default_flow_style=False)
    if (
        yaml.safe_load(body) != spec
    ):  # a name YAML folds (NEL, U+2028) is written escaped, so it reads back verbatim
        body = yaml.safe_dump(spec, sort_keys=False, allow_unicode=False, default_flow_style=False)
    return "\n".join(header) + "\n" + body
