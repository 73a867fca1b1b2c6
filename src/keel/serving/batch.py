"""Batch scoring of CSV or Parquet files on any fsspec path, in chunks, written atomically.

Each chunk goes through the same :class:`ScoringEngine` path as the API, so a row gets the
same score and reasons here as over HTTP. Memory is bounded by the chunk size, not the
file size. The output is written under a temporary name beside the target and renamed
only when every row is scored, so a failed run leaves no partial file behind.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import csv as pa_csv

from keel.errors import DataError
from keel.serving.engine import ScoringEngine


_ARROW_TYPES = {"int": pa.float64(), "float": pa.float64(), "str": pa.string(), "bool": pa.bool_()}


def read_chunks(url: str, rows: int, contract: dict[str, dict] | None = None) -> Iterator[pd.DataFrame]:
    """The rows of a CSV or Parquet file, ``rows`` at a time.

    CSV columns named in ``contract`` are parsed with its types (integers as float64, so
    ``5e+05`` reads as it did in training), the same in every chunk.
    """
    fs, path = fsspec.core.url_to_fs(url)
    if path.endswith(".parquet"):
        with fs.open(path, "rb") as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=rows):
                yield batch.to_pandas()
    elif path.endswith(".csv"):
        with fs.open(path, "rb") as handle:
            types = {c: _ARROW_TYPES[r["dtype"]] for c, r in (contract or {}).items() if r["dtype"] in _ARROW_TYPES}
            reader = pa_csv.open_csv(handle, read_options=pa_csv.ReadOptions(block_size=1 << 22),
                                     convert_options=pa_csv.ConvertOptions(column_types=types))
            pending = pd.DataFrame()
            for batch in reader:
                pending = pd.concat([pending, batch.to_pandas()], ignore_index=True)
                while len(pending) >= rows:
                    yield pending.iloc[:rows].reset_index(drop=True)
                    pending = pending.iloc[rows:].reset_index(drop=True)
            if len(pending):
                yield pending
    else:
        raise DataError(f"{url}: batch scoring reads .csv or .parquet files")


def score_file(
    engine: ScoringEngine,
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
    version and (with ``reasons``) the reasons as a JSON list.
    """
    if not target.endswith(".parquet"):
        raise DataError(f"{target}: batch output is written as Parquet; give a .parquet path")
    fs, path = fsspec.core.url_to_fs(target)
    partial = f"{path}.partial-{uuid.uuid4().hex[:8]}"
    total = 0
    writer: pq.ParquetWriter | None = None
    try:
        with fs.open(partial, "wb") as handle:
            for chunk in read_chunks(source, chunk_rows, engine.model.metadata.get("contract")):
                missing = [c for c in keep or [] if c not in chunk.columns]
                if missing:
                    raise DataError(f"{source}: no column(s) {missing} to keep; it has {list(chunk.columns)}")
                table = pa.Table.from_pandas(_output(engine, chunk, keep or [], reasons), preserve_index=False)
                writer = writer or pq.ParquetWriter(handle, table.schema)
                writer.write_table(table)
                total += len(chunk)
                if on_chunk:
                    on_chunk(len(chunk))
            if writer is not None:
                writer.close()
        if writer is None:
            raise DataError(f"{source} holds no rows to score")
        fs.mv(partial, path)
    finally:
        if fs.exists(partial):
            fs.rm(partial)
    return total


def _output(engine: ScoringEngine, chunk: pd.DataFrame, keep: list[str], reasons: bool) -> pd.DataFrame:
    decisions = engine.score_frame(chunk, reasons=reasons)
    out = chunk[keep].reset_index(drop=True).copy()
    out["probability"] = [d["probability"] for d in decisions]
    out["decision"] = [d["decision"] for d in decisions]
    out["model"] = engine.name
    out["version"] = engine.version
    if reasons:
        out["reasons"] = [json.dumps(d["reasons"]) for d in decisions]
    return out
