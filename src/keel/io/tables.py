"""Read CSV/Parquet tables from any fsspec URL (local path, s3://, hdfs://) with their hash."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from dataclasses import dataclass
from typing import Literal

import fsspec
import pandas as pd

from keel.errors import DataError


@dataclass(frozen=True)
class LoadedTable:
    """A table as read, with the sha256 of the exact bytes it came from."""

    frame: pd.DataFrame
    sha256: str
    url: str
    format: str


def read_bytes(url: str) -> bytes:
    """All bytes behind an fsspec URL; a missing file is a DataError naming the URL."""
    try:
        with fsspec.open(url, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise DataError(f"data source '{url}' does not exist; check data.source in the spec") from None
    except (OSError, ValueError, ImportError) as err:
        raise DataError(f"cannot read data source '{url}': {err}") from err


MAX_COLUMNS = 10_000  # a table wider than this is refused before it is parsed (data.max_columns)


def column_count(raw: bytes, fmt: Literal["csv", "parquet"], *, gzipped: bool = False) -> int:
    """How many columns a CSV header or a Parquet schema names, read without parsing the rows."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return len(pq.ParquetFile(io.BytesIO(raw)).schema_arrow)
    stream = gzip.GzipFile(fileobj=io.BytesIO(raw)) if gzipped else io.BytesIO(raw)
    header = stream.readline().decode("utf-8", errors="replace")
    return len(next(csv.reader([header]), []))


def read_table(url: str, fmt: Literal["csv", "parquet"], *, max_columns: int = MAX_COLUMNS) -> LoadedTable:
    """Read a CSV or Parquet file and hash its bytes, so a run records exactly what it saw.

    A table with more than ``max_columns`` columns is refused before its rows are parsed
    (a million-column CSV once took a minute and gigabytes to refuse later).
    """
    raw = read_bytes(url)
    digest = hashlib.sha256(raw).hexdigest()
    try:
        width = column_count(raw, fmt, gzipped=url.endswith(".gz"))
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"'{url}' is not a readable {fmt} file: {err}") from err
    if width > max_columns:
        raise DataError(f"'{url}' has {width:,} columns, more than the {max_columns:,} accepted "
                        "(data.max_columns); select the columns you need first, or raise the limit")
    try:
        if fmt == "csv":
            frame = pd.read_csv(io.BytesIO(raw), compression="gzip" if url.endswith(".gz") else None)
        else:
            frame = pd.read_parquet(io.BytesIO(raw))
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise DataError(f"'{url}' is not a readable {fmt} file: {err}") from err
    if frame.empty:
        raise DataError(f"'{url}' holds no rows; a project needs data to train on")
    return LoadedTable(frame=frame, sha256=digest, url=url, format=fmt)
