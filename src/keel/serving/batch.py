"""Batch scoring of CSV or Parquet files on any fsspec path, in chunks, written atomically.

Each chunk goes through the same :class:`ServedModel` path as the API, so a row gets the
same score and reasons here as over HTTP. Memory is bounded by the chunk size, not the
file size. The output is written under a temporary name beside the target and renamed
only when every row is scored (on an object store such as ``s3://``, copied server-side in
one request), so a failed run leaves no partial file behind. A file or store that cannot be
read or written is a DataError naming its URL.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Any

import fsspec
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import csv as pa_csv

from keel.errors import DataError
from keel.io.stores import storage_errors, storage_failure
from keel.io.tables import table_format
from keel.serving.served import ServedModel

_ARROW_TYPES = {"int": pa.float64(), "float": pa.float64(), "str": pa.string(), "bool": pa.bool_()}


def read_chunks(
    url: str, rows: int, contract: dict[str, dict] | None = None
) -> Iterator[pd.DataFrame]:
    """The rows of a CSV or Parquet file, ``rows`` at a time, as tables."""
    for batch in read_batches(url, rows, contract):
        yield batch.to_pandas()


def read_batches(
    url: str, rows: int, contract: dict[str, dict] | None = None
) -> Iterator[pa.Table]:
    """The rows of a CSV or Parquet file, ``rows`` at a time, as Arrow tables of one schema.

    CSV columns named in ``contract`` are parsed with its types (integers as float64, so
    ``5e+05`` reads as it did in training), the same in every chunk; empty fields and the
    usual markers (NA, null, ...) are missing values in every column, as pandas reads them.
    A file or store that cannot be read is a DataError naming ``url``.
    """
    kind = table_format(url)
    if kind is None:
        raise DataError(f"{url}: batch scoring reads .csv, .csv.gz, .txt, .parquet or .pq files")
    fs, path = _filesystem(url, "read batch input")
    try:
        yield from (
            _parquet_batches(fs, path, rows)
            if kind == "parquet"
            else _csv_batches(fs, path, rows, contract)
        )
    except FileNotFoundError as error:
        raise DataError(f"batch input '{url}' does not exist ({error})") from None
    except storage_errors() as error:
        raise storage_failure("read batch input", url, error) from error


def _parquet_batches(fs: Any, path: str, rows: int) -> Iterator[pa.Table]:
    with fs.open(path, "rb") as handle:
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=rows):
            yield pa.Table.from_batches([batch])


def _csv_batches(
    fs: Any, path: str, rows: int, contract: dict[str, dict] | None
) -> Iterator[pa.Table]:
    with fs.open(path, "rb", compression="infer") as handle:  # .csv.gz is read as it streams
        types = {
            c: _ARROW_TYPES[r["dtype"]]
            for c, r in (contract or {}).items()
            if r["dtype"] in _ARROW_TYPES
        }
        reader = pa_csv.open_csv(
            handle,
            read_options=pa_csv.ReadOptions(block_size=1 << 22),
            convert_options=pa_csv.ConvertOptions(column_types=types, strings_can_be_null=True),
        )
        pending: pa.Table | None = None
        for batch in reader:
            block = pa.Table.from_batches([batch])
            pending = block if pending is None else pa.concat_tables([pending, block])
            while pending.num_rows >= rows:
                yield pending.slice(0, rows)
                pending = pending.slice(rows)
        if pending is not None and pending.num_rows:
            yield pending


def _filesystem(url: str, action: str) -> tuple[Any, str]:
    """The fsspec filesystem and path of ``url``; an unknown scheme is a DataError."""
    try:
        return fsspec.core.url_to_fs(url)
    except storage_errors(ImportError, ValueError) as error:  # an unknown scheme, a bad URL
        raise storage_failure(action, url, error) from error


def score_file(
    engine: ServedModel,
    source: str,
    target: str,
    *,
    keep: list[str] | None = None,
    reasons: bool = True,
    chunk_rows: int = 50_000,
    on_chunk: Callable[[int], None] | None = None,
) -> int:
    """Score every row of ``source`` into the Parquet file ``target``; returns the number of rows.

    Output columns: the ``keep`` columns of the input, then probability, decision, model,
    version and (with ``reasons``) the reasons as a JSON list. ``target`` may be on an object
    store: a store that cannot be written is found before any row is scored.
    """
    if not target.endswith(".parquet"):
        raise DataError(f"{target}: batch output is written as Parquet; give a .parquet path")
    fs, path = _filesystem(target, "write batch output")
    partial = f"{path}.partial-{uuid.uuid4().hex[:8]}"
    total = 0
    writer: pq.ParquetWriter | None = None
    try:
        fs.pipe_file(partial, b"")  # can it be written at all? (bucket, endpoint, credentials)
        with fs.open(partial, "wb") as handle:
            for batch in read_batches(source, chunk_rows, engine.model.metadata.get("contract")):
                missing = [c for c in keep or [] if c not in batch.column_names]
                if missing:
                    raise DataError(
                        f"{source}: no column(s) {missing} to keep; it has {batch.column_names}"
                    )
                table = _output(engine, batch, keep or [], reasons)
                writer = writer or pq.ParquetWriter(handle, table.schema)
                writer.write_table(table)
                total += batch.num_rows
                if on_chunk:
                    on_chunk(batch.num_rows)
            if writer is not None:
                writer.close()
        if writer is None:
            raise DataError(f"{source} holds no rows to score")
        fs.mv(partial, path)  # on an object store: one server-side copy, whole or not at all
    except storage_errors() as error:
        raise storage_failure("write batch output", target, error) from error
    finally:
        _remove(fs, partial)
    return total


def _remove(fs: Any, path: str) -> None:
    """Remove ``path`` if it is there; a store that cannot be reached keeps it (nothing to do)."""
    with suppress(*storage_errors()):
        if fs.exists(path):
            fs.rm(path)


def _output(engine: ServedModel, batch: pa.Table, keep: list[str], reasons: bool) -> pa.Table:
    """The kept columns as they are in the file, then the decisions.

    Kept as they are, every chunk's columns have the same types.
    """
    decisions = engine.score_frame(batch.to_pandas(), reasons=reasons)
    columns = {name: batch.column(name) for name in keep}
    columns["probability"] = pa.array([d["probability"] for d in decisions], pa.float64())
    columns["decision"] = pa.array([d["decision"] for d in decisions], pa.string())
    columns["model"] = pa.array([engine.name] * len(decisions), pa.string())
    columns["version"] = pa.array([engine.version] * len(decisions), pa.int64())
    if reasons:
        columns["reasons"] = pa.array(
            [orjson.dumps(d["reasons"]).decode() for d in decisions], pa.string()
        )
    return pa.table(columns)
