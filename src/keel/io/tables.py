"""Read CSV/Parquet tables from any fsspec URL (local path, s3://, hdfs://) with their hash."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Literal

import fsspec
import pandas as pd

from keel.errors import DataError
from keel.io.stores import is_object_store, scheme_of, storage_errors, storage_failure


@dataclass(frozen=True)
class LoadedTable:
    """A table as read, with the sha256 of the exact bytes it came from."""

    frame: pd.DataFrame
    sha256: str
    url: str
    format: str


SCHEMES_ENV, MAX_BYTES_ENV = "KEEL_DATA_SCHEMES", "KEEL_MAX_SOURCE_BYTES"
DEFAULT_SCHEMES = ("file", "s3", "s3a", "gs", "gcs", "hdfs", "abfs", "az", "memory")
DEFAULT_MAX_BYTES = 16 * 1024**3
_CHUNK = 8 * 1024**2


def allowed_schemes() -> tuple[str, ...]:
    """The URL schemes a data source may use.

    The operator's ``KEEL_DATA_SCHEMES`` (comma separated), else local paths and object
    stores; ``http``/``https`` only when the operator lists them.
    """
    configured = os.environ.get(SCHEMES_ENV, "")
    return tuple(s.strip().lower() for s in configured.split(",") if s.strip()) or DEFAULT_SCHEMES


def read_bytes(url: str) -> bytes:
    """All bytes behind an fsspec URL, at most ``KEEL_MAX_SOURCE_BYTES`` (16 GiB).

    Every failure is a DataError.
    """
    scheme = scheme_of(url)
    if scheme not in allowed_schemes():
        raise DataError(
            f"data source '{url}': the scheme '{scheme}' is not allowed here; allowed: "
            f"{', '.join(allowed_schemes())} (the operator sets {SCHEMES_ENV})"
        )
    if scheme == "file":
        path = url.removeprefix("file://")
        if os.path.exists(path) and not os.path.isfile(path):
            raise DataError(
                f"data source '{url}' is not a regular file (a device, a pipe or a folder)"
            )
    limit = int(os.environ.get(MAX_BYTES_ENV) or DEFAULT_MAX_BYTES)
    try:
        opened = _open_http(url) if scheme in ("http", "https") else fsspec.open(url, "rb")
        with opened as handle:
            chunks, size = [], 0
            while chunk := handle.read(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise DataError(
                        f"data source '{url}' is larger than {limit:,} bytes ({MAX_BYTES_ENV}); "
                        "split it, or raise the limit"
                    )
                chunks.append(chunk)
            return b"".join(chunks)
    except DataError:
        raise
    except FileNotFoundError as err:
        where = f" ({err})" if is_object_store(url) else ""  # no such bucket, or no such key
        raise DataError(
            f"data source '{url}' does not exist{where}; check data.source in the spec"
        ) from None
    except storage_errors(ValueError, ImportError, RuntimeError) as err:  # fsspec's, the stores'
        raise storage_failure("read data source", url, err) from err


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect could lead to a host the operator did not mean


def _open_http(url: str) -> Any:
    """An http(s) source opened without following redirects.

    A 3xx is an error naming where it pointed.
    """
    try:
        return urllib.request.build_opener(_NoRedirect).open(url, timeout=60)
    except urllib.error.HTTPError as answer:
        where = answer.headers.get("Location")
        raise DataError(
            f"data source '{url}' answered {answer.code}"
            + (
                f" pointing to {where}; redirects are not followed: give the final URL"
                if where
                else ""
            )
        ) from None


MAX_COLUMNS = 10_000  # a table wider than this is refused before it is parsed (data.max_columns)


TableFormat = Literal["csv", "parquet"]


def table_format(url: str) -> TableFormat | None:
    """The format a table's name implies (.parquet, .pq; .csv, .csv.gz, .txt), or None."""
    name = url.lower().split("?")[0]
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".csv.gz", ".txt")):
        return "csv"
    return None


def column_count(raw: bytes, fmt: Literal["csv", "parquet"], *, gzipped: bool = False) -> int:
    """How many columns a CSV header or a Parquet schema names, read without parsing the rows."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return len(pq.ParquetFile(io.BytesIO(raw)).schema_arrow)
    stream = gzip.GzipFile(fileobj=io.BytesIO(raw)) if gzipped else io.BytesIO(raw)
    header = stream.readline().decode("utf-8", errors="replace")
    return len(next(csv.reader([header]), []))


def read_table(
    url: str, fmt: Literal["csv", "parquet"], *, max_columns: int = MAX_COLUMNS
) -> LoadedTable:
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
        raise DataError(
            f"'{url}' has {width:,} columns, more than the {max_columns:,} accepted "
            "(data.max_columns); select the columns you need first, or raise the limit"
        )
    try:
        if fmt == "csv":
            frame = pd.read_csv(
                io.BytesIO(raw), compression="gzip" if url.endswith(".gz") else None
            )
        else:
            frame = pd.read_parquet(io.BytesIO(raw))
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise DataError(f"'{url}' is not a readable {fmt} file: {err}") from err
    if frame.empty:
        raise DataError(f"'{url}' holds no rows; a project needs data to train on")
    return LoadedTable(frame=frame, sha256=digest, url=url, format=fmt)
