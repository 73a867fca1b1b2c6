"""Offline feature computation on an engine: DuckDB on the whole table, or per entity on Dask.

On Dask each entity's rows are shuffled to one partition and the same SQL kernel runs
there, so a row's window sees exactly the events it sees in process. The engine is a
configuration choice (:mod:`keel.engine`); results are the same on both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from keel.engine import Engine
from keel.errors import DataError
from keel.features.windows import (
    ROW,
    FeaturePlan,
    calendar_features,
    input_columns,
    run_kernel,
    scatter,
)
from keel.spec import ProjectSpec, WindowFeature


def add_features(
    frame: pd.DataFrame, spec: ProjectSpec, *, engine: Engine | None = None
) -> pd.DataFrame:
    """``frame`` with the spec's window and calendar features appended (row order kept)."""
    plan = FeaturePlan.of(spec)
    if not plan.names():
        return frame
    values = compute_features(frame, plan, engine=engine)
    return pd.concat([frame.reset_index(drop=True), pd.DataFrame(values)], axis=1)


def compute_features(
    frame: pd.DataFrame, plan: FeaturePlan, *, engine: Engine | None = None
) -> dict[str, np.ndarray]:
    """Every feature of ``plan`` for every row of ``frame``, in row order."""
    time = plan.time_column
    if time is None:
        raise DataError("window and calendar features need data.time_column")
    if plan.windows:
        if frame[time].isna().any():
            raise DataError(
                f"the time column '{time}' has {int(frame[time].isna().sum())} missing value(s); "
                "window features need a time on every row"
            )
        columns = [time, *input_columns(plan.windows)]
        keyed = pd.DataFrame({ROW: np.arange(len(frame), dtype=np.int64)}).join(
            frame[columns].reset_index(drop=True)
        )
        if engine is not None and engine.distributed:
            result = _on_dask(keyed, plan, engine)
        else:
            result = run_kernel(
                pa.Table.from_pandas(keyed, preserve_index=False), plan.windows, time
            )
        values = scatter(result, [f.name for f in plan.windows], len(frame))
    else:
        values = {}
    values.update(calendar_features(frame[time], plan.calendar))
    return values


def _kernel_partition(
    part: pd.DataFrame, features: Sequence[WindowFeature], time_column: str, key: str
) -> pd.DataFrame:
    """The kernel on one partition holding whole entities (runs on a worker, one thread)."""
    table = pa.Table.from_pandas(part, preserve_index=False)
    return run_kernel(table, features, time_column, key=key, threads=1).to_pandas()


def dask_group_features(
    ddf: Any,
    features: Sequence[WindowFeature],
    time_column: str,
    *,
    key: str = ROW,
    partitions: int | None = None,
) -> Any:
    """A Dask frame of ``key`` and ``features`` (all on one entity).

    Shuffles by entity, then runs the kernel on each partition.
    """
    entity = features[0].entity
    columns = list(dict.fromkeys([key, time_column, *input_columns(features)]))
    shuffled = ddf[columns].shuffle(on=entity, npartitions=partitions or ddf.npartitions)
    meta = pd.DataFrame(
        {
            key: pd.Series(dtype=ddf[key].dtype),
            **{f.name: pd.Series(dtype="float64") for f in features},
        }
    )
    return shuffled.map_partitions(_kernel_partition, list(features), time_column, key, meta=meta)


def features_of_file(
    source: str,
    plan: FeaturePlan,
    key: str,
    *,
    engine: Engine | None = None,
    out: str | None = None,
    partitions: int | None = None,
) -> pa.Table | list[str]:
    """Window features of a Parquet file (or glob), keyed by the id column ``key``.

    In process: DuckDB reads the file and returns one table. On Dask (``out`` needed):
    each entity's features are written as partitioned Parquet under ``out/<entity>/``,
    and the folders written are returned; nothing is gathered on the client.
    """
    time = plan.time_column or ""
    if engine is None or not engine.distributed:
        return run_kernel(source, plan.windows, time, key=key)
    import dask.dataframe as dd

    if out is None:
        raise DataError(
            "features of a file on a Dask cluster are written out; give an output folder"
        )
    columns = list(dict.fromkeys([key, time, *input_columns(plan.windows)]))
    ddf = dd.read_parquet(source, columns=columns)
    folders = []
    for entity, features in plan.groups().items():
        folder = f"{out.rstrip('/')}/{entity}"
        dask_group_features(ddf, features, time, key=key, partitions=partitions).to_parquet(
            folder, write_index=False, compute=True
        )
        folders.append(folder)
    return folders


def _on_dask(keyed: pd.DataFrame, plan: FeaturePlan, engine: Engine) -> pa.Table:
    import dask
    import dask.dataframe as dd

    partitions = max(2 * engine.workers(), 2)
    ddf = dd.from_pandas(keyed, npartitions=partitions, sort=False)
    groups = [
        dask_group_features(ddf, features, plan.time_column or "", partitions=partitions)
        for features in plan.groups().values()
    ]
    frames = dask.compute(*groups, scheduler=engine.client.get)
    merged = frames[0].set_index(ROW)
    for frame in frames[1:]:
        merged = merged.join(frame.set_index(ROW), how="inner")
    return pa.Table.from_pandas(merged.reset_index(), preserve_index=False)
