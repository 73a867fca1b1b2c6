"""Batch scoring on a Dask cluster: the same engine per partition, output as partitioned Parquet.

The client sends the verified model's files (pickle-free bytes) to the workers once; each
worker rebuilds the model, checks its hash again, and scores its partitions exactly as
:func:`keel.serving.batch.score_file` scores a chunk. A spec with window or calendar
features has them computed first on the cluster (shuffled by entity, the same kernel),
then joined to the rows by the id column. The output folder appears only when complete.
"""

from __future__ import annotations

import uuid
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa

from keel.engine import Engine
from keel.errors import DataError
from keel.features.offline import dask_group_features
from keel.features.windows import FeaturePlan, calendar_features
from keel.models.artifact import MANIFEST, sha256_bytes
from keel.serving.batch import _output
from keel.serving.served import ServedModel, shipped_engine
from keel.spec import ProjectSpec


def _score_partition(
    part: pd.DataFrame,
    files: dict[str, bytes],
    sha: str,
    name: str,
    version: int,
    keep: list[str],
    reasons: bool,
) -> pd.DataFrame:
    """Score one partition with this worker's engine (the columns :func:`_output` writes)."""
    if part.empty:
        return _meta(part, keep, reasons)
    engine = shipped_engine(files, sha, name, version)
    return _output(
        engine, pa.Table.from_pandas(part, preserve_index=False), keep, reasons
    ).to_pandas()


def _meta(rows: pd.DataFrame, keep: list[str], reasons: bool) -> pd.DataFrame:
    """An empty frame with the output's columns and types."""
    text = pa.array([], pa.string()).to_pandas().dtype
    columns = {name: pd.Series(dtype=rows[name].dtype) for name in keep}
    columns.update(
        probability=pd.Series(dtype="float64"),
        decision=pd.Series(dtype=text),
        model=pd.Series(dtype=text),
        version=pd.Series(dtype="int64"),
    )
    if reasons:
        columns["reasons"] = pd.Series(dtype=text)
    return pd.DataFrame(columns)


def _with_features(ddf: Any, spec: ProjectSpec) -> Any:
    """The rows with the spec's window features (joined by id) and calendar parts added."""
    plan = FeaturePlan.of(spec)
    if plan.windows:
        key = spec.data.id_column
        if key is None:
            raise DataError(
                "scoring window features on a cluster needs data.id_column to join them to the rows"
            )
        for features in plan.groups().values():
            ddf = ddf.merge(
                dask_group_features(ddf, features, plan.time_column or "", key=key),
                on=key,
                how="left",
            )
    if plan.calendar:
        time = plan.time_column or ""
        ddf = ddf.map_partitions(
            lambda part: part.assign(**calendar_features(part[time], plan.calendar))
        )
    return ddf


def score_on_cluster(
    engine: ServedModel,
    cluster: Engine,
    source: str,
    target: str,
    *,
    spec: ProjectSpec | None = None,
    keep: list[str] | None = None,
    reasons: bool = True,
) -> int:
    """Score every row of the Parquet ``source`` (file or glob) into the folder ``target``.

    Returns the number of rows.
    """
    import dask.dataframe as dd

    if not cluster.distributed:
        raise DataError("score_on_cluster needs a Dask cluster; use score_file in process")
    ddf = dd.read_parquet(source)
    missing = [c for c in keep or [] if c not in ddf.columns]
    if missing:
        raise DataError(f"{source}: no column(s) {missing} to keep; it has {list(ddf.columns)}")
    if spec is not None:
        ddf = _with_features(ddf, spec)
    files = engine.model.files()
    sha = sha256_bytes(files[MANIFEST])
    shipped = cluster.client.scatter([files], broadcast=True)[
        0
    ]  # one future holding the whole dict
    scored = ddf.map_partitions(
        _score_partition,
        shipped,
        sha,
        engine.name,
        engine.version,
        keep or [],
        reasons,
        meta=_meta(ddf._meta, keep or [], reasons),
    )
    fs, path = fsspec.core.url_to_fs(target)
    if fs.exists(path):
        raise DataError(f"{target} exists; batch output goes to a new folder")
    partial = f"{path.rstrip('/')}.partial-{uuid.uuid4().hex[:8]}"
    try:
        scored.to_parquet(partial, write_index=False, filesystem=fs)
        fs.mv(partial, path, recursive=True)
    finally:
        if fs.exists(partial):
            fs.rm(partial, recursive=True)
    return int(dd.read_parquet(target, columns=["probability"]).shape[0].compute())
