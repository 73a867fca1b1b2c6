"""Check a table against its data contract before anything trains.

Two steps: *conform* parses each column into the contract's dtype without losing
information (a CSV's ``5e+05`` becomes the integer 500000; ``1.5`` in an int column
is a failure, never a silent truncation), then pandera checks nullability,
uniqueness, ranges and allowed codes. Every failure is reported with its column,
rule, count and a sample of failing rows.

A column's ``missing_values`` (codes such as 96 or -1 that mean "unknown") are read as
missing between the two steps, so no rule sees them and the typed frame holds them as
missing. :func:`is_missing_code` is the same rule for one value, where serving reads a request.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd

from keel.errors import ContractError, did_you_mean
from keel.spec import ColumnContract, ContractSpec, Scalar


@dataclass(frozen=True)
class Failure:
    """One broken rule: which column, which rule, how many rows, and some of them."""

    column: str
    rule: str
    count: int
    sample: list[dict[str, Any]] = field(default_factory=list)
    detail: str = ""


@dataclass(frozen=True)
class ContractReport:
    """The outcome of a contract check; ``ok`` when no rule was broken."""

    rows: int
    columns_checked: int
    failures: tuple[Failure, ...]
    dropped_columns: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when every rule held."""
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form of the report."""
        return {
            "ok": self.ok,
            "rows": self.rows,
            "columns_checked": self.columns_checked,
            "dropped_columns": list(self.dropped_columns),
            "failures": [asdict(f) for f in self.failures],
        }

    def summary(self) -> str:
        """Human-readable lines, one per failure, with sample rows (0-based data row numbers)."""
        if self.ok:
            return f"contract holds: {self.rows} rows, {self.columns_checked} columns checked"
        lines = [f"contract broken: {len(self.failures)} rule(s) failed on {self.rows} rows"]
        for f in self.failures:
            shown = ", ".join(f"row {s['row']}: {s['value']!r}" for s in f.sample)
            lines.append(
                f"  - column '{f.column}', rule {f.rule}: {f.count} row(s) fail"
                + (f" ({f.detail})" if f.detail else "")
                + (f"; e.g. {shown}" if shown else "")
            )
        return "\n".join(lines)


def _python(value: Any) -> Any:
    """A numpy scalar as a plain Python value, for JSON and messages; a missing value is None."""
    if value is None or (not isinstance(value, (list, tuple, dict, np.ndarray)) and pd.isna(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def _sample(values: pd.Series, limit: int) -> list[dict[str, Any]]:
    # pandas-stubs types an index label as Hashable; the labels here are row numbers (ints).
    return [{"row": int(cast(int, i)), "value": _python(v)} for i, v in values.head(limit).items()]


_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def _conform(
    series: pd.Series, rule: ColumnContract, limit: int
) -> tuple[pd.Series, Failure | None]:
    """Parse one column into the contract dtype; unparseable values become one failure."""
    name = str(series.name)
    present = series.notna()
    if rule.dtype in ("int", "float"):
        if pd.api.types.is_bool_dtype(series):
            bad = present
            numeric = series.astype("float64")
        else:
            numeric = pd.to_numeric(series, errors="coerce").astype("float64")
            bad = present & numeric.isna()
        if rule.dtype == "int":
            finite = numeric.where(np.isfinite(numeric))
            bad = bad | (present & ~bad & (finite.isna() | (finite != np.floor(finite))))
        if bad.any():
            return series, Failure(
                name,
                f"dtype {rule.dtype}",
                int(bad.sum()),
                _sample(series[bad], limit),
                "whole numbers expected" if rule.dtype == "int" else "numbers expected",
            )
        if rule.dtype == "int":
            return (
                numeric.astype("int64") if not numeric.isna().any() else numeric.astype("Int64")
            ), None
        return numeric, None
    if rule.dtype == "bool":
        if pd.api.types.is_bool_dtype(series):
            return series, None
        text = series.astype("string").str.strip().str.lower()
        bad = present & ~text.isin(_TRUE | _FALSE)
        if bad.any():
            return series, Failure(
                name,
                "dtype bool",
                int(bad.sum()),
                _sample(series[bad], limit),
                "true/false, yes/no or 1/0 expected",
            )
        return text.map(lambda v: pd.NA if pd.isna(v) else v in _TRUE).astype("boolean"), None
    if rule.dtype == "datetime":
        if pd.api.types.is_datetime64_any_dtype(series):
            return series, None
        parsed = pd.to_datetime(series, errors="coerce", format="ISO8601")
        bad = present & parsed.isna()
        if bad.any():
            return series, Failure(
                name,
                "dtype datetime",
                int(bad.sum()),
                _sample(series[bad], limit),
                "ISO 8601 dates expected, e.g. 2024-01-31 or 2024-01-31T08:00:00",
            )
        return parsed, None
    # str: keep text as it is; numbers read from a CSV become their text form.
    if pd.api.types.is_float_dtype(series) and (series.dropna() == np.floor(series.dropna())).all():
        series = series.astype("Int64")
    return series.astype("string"), None


def _code_key(value: Any, dtype: str) -> Any:
    """What a value is compared as against a column's codes: a number for int and float columns
    (so 96, 96.0 and '96' agree), a timestamp for datetime columns, text for text columns."""
    if dtype in ("int", "float"):
        if isinstance(value, bool):  # True is not the code 1
            return ("bool", value)
        try:
            return float(value)
        except (TypeError, ValueError):
            return value
    if dtype == "datetime":
        try:
            return pd.Timestamp(value)
        except (TypeError, ValueError):
            return value
    return str(value) if dtype == "str" else value


def is_missing_code(value: Any, dtype: str, codes: Sequence[Scalar]) -> bool:
    """Whether ``value`` is one of a column's ``missing_values`` ``codes`` (``dtype``: the
    column's contract dtype). The one rule for a single value; :func:`read_missing_codes` applies
    it to a whole column."""
    if not codes or value is None:
        return False
    key = _code_key(value, dtype)
    return any(key == _code_key(code, dtype) for code in codes)


def read_missing_codes(series: pd.Series, rule: ColumnContract) -> pd.Series:
    """A conformed column with its ``missing_values`` codes read as missing.

    The rule of :func:`is_missing_code`, vectorised; an int column without NaN becomes the
    nullable ``Int64`` once a code is removed.
    """
    if not rule.missing_values:
        return series
    keys = [_code_key(code, rule.dtype) for code in rule.missing_values]
    if rule.dtype in ("int", "float"):
        hits = series.astype("float64").isin([k for k in keys if isinstance(k, float)])
    elif rule.dtype == "str":
        hits = series.astype("string").isin([str(k) for k in keys])
    else:
        hits = series.isin(keys)
    hits = hits.fillna(False).astype(bool)
    if not hits.any():
        return series
    if rule.dtype == "int":
        series = series.astype("Int64")
    return series.mask(hits)


def _readable_rule(check: str) -> str:
    """pandera's check names in the words of the spec."""
    replacements = {
        "not_nullable": "nullable: false",
        "field_uniqueness": "unique: true",
        "column_in_dataframe": "present",
    }
    if check in replacements:
        return replacements[check]
    for prefix, word in (
        ("greater_than_or_equal_to(", "min: "),
        ("less_than_or_equal_to(", "max: "),
        ("isin(", "allowed: "),
    ):
        if check.startswith(prefix):
            return word + check[len(prefix) : -1]
    return check


def _pandera() -> Any:
    """``pandera.pandas``, imported on first use, without its import of ``pyspark.pandas``.

    Where pyspark is installed, pandera imports ``pyspark.pandas`` only to patch pandas type
    hints that Keel does not use; beside pandas 3 that costs seconds and a FutureWarning in every
    process that checks a contract. The module is hidden for that one import, then restored.
    """
    if "pandera.pandas" in sys.modules or "pyspark.pandas" in sys.modules:
        import pandera.pandas as pa

        return pa
    sys.modules["pyspark.pandas"] = None  # type: ignore[assignment]  # import -> ImportError
    try:
        import pandera.pandas as pa
    finally:
        del sys.modules["pyspark.pandas"]
    return pa


def _pandera_schema(contract: ContractSpec, columns: list[str]) -> Any:
    pa = _pandera()  # heavy import, only when a contract is checked

    schema_columns = {}
    for name in columns:
        rule = contract.columns[name]
        checks = []
        if rule.min is not None:
            checks.append(pa.Check.ge(rule.min))
        if rule.max is not None:
            checks.append(pa.Check.le(rule.max))
        if rule.allowed is not None:
            allowed = [str(a) for a in rule.allowed] if rule.dtype == "str" else list(rule.allowed)
            checks.append(pa.Check.isin(allowed))
        schema_columns[name] = pa.Column(
            None, checks=checks, nullable=rule.nullable, unique=rule.unique
        )
    return pa, pa.DataFrameSchema(schema_columns)


def check_contract(
    frame: pd.DataFrame, contract: ContractSpec
) -> tuple[pd.DataFrame, ContractReport]:
    """Conform and check ``frame``.

    Returns the typed frame (contract columns only) and the report.
    """
    limit = contract.failure_sample
    frame = frame.reset_index(drop=True)
    failures: list[Failure] = []
    seen = [str(c) for c in frame.columns]
    missing = [c for c in contract.columns if c not in frame.columns]
    extra = tuple(c for c in seen if c not in contract.columns)
    for name in missing:
        failures.append(
            Failure(
                name,
                "present",
                len(frame),
                [],
                f"column is missing from the data.{did_you_mean(name, extra)}"
                f" Columns seen: {', '.join(seen[:30])}",
            )
        )
    if extra and contract.extra_columns == "error":
        for name in extra:
            failures.append(
                Failure(
                    name,
                    "in contract",
                    len(frame),
                    [],
                    "column is not in contract.columns and contract.extra_columns is 'error'",
                )
            )
    present = [c for c in contract.columns if c in frame.columns]
    typed: dict[str, pd.Series] = {}
    conformed: list[str] = []
    for name in present:
        rule = contract.columns[name]
        series, failure = _conform(frame[name], rule, limit)
        if failure:
            failures.append(failure)
        else:
            series = read_missing_codes(series, rule)
            conformed.append(name)
        typed[name] = series
    result = pd.DataFrame(typed, index=frame.index)
    if conformed:
        pa, schema = _pandera_schema(contract, conformed)
        try:
            schema.validate(result[conformed], lazy=True)
        except pa.errors.SchemaErrors as err:
            cases = err.failure_cases
            for (column, check), group in cases.groupby(
                ["column", "check"], sort=False, dropna=False
            ):
                rows = group.drop_duplicates("index").set_index("index")["failure_case"]
                failures.append(
                    Failure(
                        str(column), _readable_rule(str(check)), len(rows), _sample(rows, limit)
                    )
                )
    report = ContractReport(
        len(frame), len(present), tuple(failures), extra if contract.extra_columns == "drop" else ()
    )
    return result, report


def enforce_contract(
    frame: pd.DataFrame, contract: ContractSpec
) -> tuple[pd.DataFrame, ContractReport]:
    """Like :func:`check_contract`, but a broken contract raises :class:`ContractError`."""
    typed, report = check_contract(frame, contract)
    if not report.ok:
        raise ContractError(report.summary(), report)
    return typed, report
