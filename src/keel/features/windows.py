"""Point-in-time window features as DuckDB SQL.

It is the one kernel for a whole table or one entity partition.

Every window of a row ends at its cutoff, ``time - delay``, and starts ``window``
earlier: events in ``(cutoff - window, cutoff]`` count (``before``: ``cutoff`` itself
excluded). With no delay, ``at_or_before`` counts the row itself but never another row
at exactly the same time, whose order is arbitrary; so the value does not depend on how
ties are ordered, and a stream that sees rows one at a time computes the same thing.
Times are whole microseconds since the epoch (``epoch_us``: finer times are floored).
Aggregates skip missing values, as SQL does; every feature is a DOUBLE.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from keel.errors import DataError
from keel.spec import ProjectSpec, WindowFeature

ROW = "__keel_row"
TIME = "__keel_time_us"

_SQL_FUNCTION = {
    "count": "count({})",
    "sum": "sum({})",
    "mean": "avg({})",
    "std": "stddev_samp({})",
    "min": "min({})",
    "max": "max({})",
    "distinct_count": "count(DISTINCT {})",
}


def quote(name: str) -> str:
    """A SQL identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def frame_clause(feature: WindowFeature) -> str:
    """The RANGE frame over whole microseconds that holds exactly the feature's events."""
    start = feature.delay_us + feature.window_us - 1
    if feature.boundary == "before":
        return f"RANGE BETWEEN {start} PRECEDING AND {feature.delay_us + 1} PRECEDING"
    if feature.delay_us == 0:
        return f"RANGE BETWEEN {start} PRECEDING AND CURRENT ROW EXCLUDE TIES"
    return f"RANGE BETWEEN {start} PRECEDING AND {feature.delay_us} PRECEDING"


def _aggregate(feature: WindowFeature) -> str:
    target = "*" if feature.column is None else f"CAST({quote(feature.column)} AS DOUBLE)"
    if feature.function == "distinct_count":
        target = quote(feature.column or "")
    return _SQL_FUNCTION[feature.function].format(target)


def select_sql(features: Sequence[WindowFeature], source: str, *, key: str = ROW) -> str:
    """One SELECT giving the row ``key`` and every feature of ``source`` (with a TIME column)."""
    windows: dict[tuple[str, str], str] = {}
    items = [quote(key)]
    for feature in features:
        window = (feature.entity, frame_clause(feature))
        name = windows.setdefault(window, f"w{len(windows)}")
        items.append(f"CAST({_aggregate(feature)} OVER {name} AS DOUBLE) AS {quote(feature.name)}")
    clauses = [
        f"{name} AS (PARTITION BY {quote(entity)} ORDER BY {quote(TIME)} {frame})"
        for (entity, frame), name in windows.items()
    ]
    return f"SELECT {', '.join(items)} FROM {source} WINDOW {', '.join(clauses)}"


def input_columns(features: Sequence[WindowFeature]) -> list[str]:
    """The data columns the features read: entities, then aggregated columns, each once."""
    names = [f.entity for f in features] + [f.column for f in features if f.column is not None]
    return list(dict.fromkeys(names))


def keyed_source(time_column: str, columns: Sequence[str], relation: str, *, key: str = ROW) -> str:
    """``relation`` with the row ``key`` kept and the time as whole microseconds."""
    kept = ", ".join(quote(c) for c in columns if c != key)
    return (
        f"(SELECT {quote(key)}, epoch_us({quote(time_column)}) AS {quote(TIME)}, "
        f"{kept} FROM {relation})"
    )


def run_kernel(
    table: pa.Table | pd.DataFrame | str,
    features: Sequence[WindowFeature],
    time_column: str,
    *,
    key: str = ROW,
    threads: int | None = None,
    memory_limit: str | None = None,
) -> pa.Table:
    """Compute ``features`` for a table (or a Parquet path).

    The table holds ``key``, the time and the input columns.
    """
    import duckdb

    config: dict[str, Any] = {"threads": threads} if threads else {}
    if memory_limit:
        config["memory_limit"] = memory_limit
    con = duckdb.connect(config=config)
    try:
        if isinstance(table, str):
            relation = f"read_parquet({sql_text(table)})"
        else:
            con.register("keel_input", table)
            relation = "keel_input"
        source = keyed_source(time_column, input_columns(features), relation, key=key)
        return con.sql(select_sql(features, source, key=key)).to_arrow_table()
    except duckdb.Error as err:
        raise DataError(f"computing window features failed: {err}") from err
    finally:
        con.close()


def sql_text(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def scatter(result: pa.Table, names: Sequence[str], rows: int) -> dict[str, np.ndarray]:
    """Put each feature's values back in row order (the kernel returns rows in any order)."""
    order = result.column(ROW).to_numpy()
    if len(order) != rows:
        raise DataError(f"window features came back for {len(order)} rows, expected {rows}")
    out = {}
    for name in names:
        values = np.empty(rows, dtype=np.float64)
        values[order] = result.column(name).to_numpy(zero_copy_only=False)
        out[name] = values
    return out


# Each rule reads ``dayofweek`` and ``hour``, which a pandas Timestamp and a Series' ``.dt``
# both have.
_CALENDAR: dict[str, Any] = {
    "weekend": lambda t: t.dayofweek >= 5,
    "night": lambda t: t.hour <= 6,
    "hour": lambda t: t.hour,
    "day_of_week": lambda t: t.dayofweek,
}


def calendar_features(times: pd.Series, parts: dict[str, str]) -> dict[str, np.ndarray]:
    """Calendar parts of each time as it is written (tz-aware times in their own zone).

    ``weekend``: Saturday or Sunday; ``night``: hour 0 to 6 (before 07:00, as the fraud
    handbook counts it); ``hour`` 0-23; ``day_of_week`` 0 (Monday) to 6.
    """
    stamps = pd.to_datetime(times).dt
    return {
        name: _CALENDAR[part](stamps).to_numpy(dtype=np.float64) for name, part in parts.items()
    }


def calendar_value(time: Any, part: str) -> float:
    """One calendar part of one time: the same rule as :func:`calendar_features`."""
    return float(_CALENDAR[part](pd.Timestamp(time)))


@dataclass(frozen=True)
class FeaturePlan:
    """What to compute for a spec: its window features and calendar parts, on its time column."""

    windows: tuple[WindowFeature, ...]
    calendar: dict[str, str]
    time_column: str | None

    @classmethod
    def of(cls, spec: ProjectSpec) -> FeaturePlan:
        """The plan a spec asks for (empty when it has no window or calendar features)."""
        return cls(
            tuple(spec.window_features()), dict(spec.features.calendar), spec.data.time_column
        )

    @classmethod
    def of_model(cls, described: Mapping[str, Any] | None) -> FeaturePlan:
        """The plan a model was trained with, from its metadata (empty for a model without any)."""
        if not described:
            return cls((), {}, None)
        return cls(
            tuple(WindowFeature(**f) for f in described["windows"]),
            dict(described["calendar"]),
            described["time_column"],
        )

    def names(self) -> list[str]:
        """Every computed feature name, windows first."""
        return [f.name for f in self.windows] + list(self.calendar)

    def groups(self) -> dict[str, list[WindowFeature]]:
        """Window features by the entity column they are partitioned on."""
        groups: dict[str, list[WindowFeature]] = {}
        for feature in self.windows:
            groups.setdefault(feature.entity, []).append(feature)
        return groups
