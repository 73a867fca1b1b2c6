"""Scoring a Spark DataFrame with the hash-checked model, through ``DataFrame.mapInPandas``.

The driver ships plain data to the executors, never a Python model object: either the
verified model's files as bytes (:func:`score_dataframe`, any cluster) or the path of its
folder on storage every executor mounts (:func:`score_dataframe_from_folder`), with the
expected sha256 and the name and version. Each executor process rebuilds the model, checks
its fingerprint and every file's hash again (a changed model is refused there with an
:class:`~keel.errors.IntegrityError`), and scores each Arrow batch exactly as
:func:`keel.serving.batch.score_file` scores a chunk. The result has the columns ``keel
score`` writes, in its order and types: the ``keep`` columns, then probability (double),
decision, model (strings), version (long) and, with ``reasons``, the reasons as JSON text.

pyspark is not a dependency of Keel: install it where Spark runs (``pip install pyspark``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from keel.errors import DataError, EngineError, IntegrityError
from keel.models.artifact import MANIFEST, KeelModel, sha256_bytes
from keel.serving.batch import _output
from keel.serving.loader import CHAMPION, load_alias
from keel.serving.served import ServedModel, shipped_engine

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType

    from keel.registry.governance import Governance

SCORED = ("probability", "decision", "model", "version", "reasons")
_FOLDERS: dict[tuple[str, str], ServedModel] = {}  # per executor: (sha256, folder) -> engine


def score_dataframe(
    df: DataFrame, model: ServedModel, *, keep: list[str] | None = None, reasons: bool = True
) -> DataFrame:
    """``df`` scored by ``model`` on the executors (lazily, as Spark runs it).

    The model's files travel as bytes with their sha256; each executor re-verifies them.
    """
    files = model.model.files()
    shipped = {"files": files, "folder": None, "sha256": sha256_bytes(files[MANIFEST])}
    return _score(df, shipped, model.name, model.version, keep, reasons)


def score_dataframe_from_folder(
    df: DataFrame,
    folder: str | Path,
    *,
    sha256: str,
    name: str,
    version: int,
    keep: list[str] | None = None,
    reasons: bool = True,
) -> DataFrame:
    """``df`` scored by the model saved in ``folder``, which every executor reads and verifies.

    ``folder`` is a path all executors see (a shared mount); ``sha256`` the registered
    fingerprint. The driver verifies it first, so a changed model fails before any job runs.
    """
    text = str(folder)
    if "://" in text and not text.startswith("file://"):
        raise DataError(
            f"{text}: executors read a model folder from a path they all mount; for object "
            "storage load the model on the driver and use score_dataframe, which ships its bytes"
        )
    path = str(Path(text.removeprefix("file://")).resolve())
    KeelModel.load(Path(path), expected_sha256=sha256)
    shipped = {"files": None, "folder": path, "sha256": sha256}
    return _score(df, shipped, name, version, keep, reasons)


def score_champion(
    df: DataFrame,
    governance: Governance,
    name: str,
    *,
    alias: str = CHAMPION,
    keep: list[str] | None = None,
    reasons: bool = True,
) -> DataFrame:
    """``df`` scored by the version the audit log makes ``name``'s champion (or challenger)."""
    return score_dataframe(df, load_alias(governance, name, alias), keep=keep, reasons=reasons)


def output_schema(df: DataFrame, keep: list[str] | None = None, reasons: bool = True) -> StructType:
    """The Spark schema of the scores: the kept columns as in ``df``, then the decision columns."""
    types = _pyspark_types()
    missing = [c for c in keep or [] if c not in df.columns]
    if missing:
        raise DataError(f"no column(s) {missing} to keep; the DataFrame has {df.columns}")
    clash = sorted(set(keep or []) & set(SCORED))
    if clash:
        raise DataError(f"cannot keep {clash}: the scores add columns named {list(SCORED)}")
    text, whole = types.StringType(), types.LongType()
    fields = [df.schema[c] for c in keep or []]
    fields += [
        types.StructField("probability", types.DoubleType()),
        types.StructField("decision", text),
        types.StructField("model", text),
        types.StructField("version", whole),
    ]
    if reasons:
        fields.append(types.StructField("reasons", text))
    return types.StructType(fields)


def _score(
    df: DataFrame,
    shipped: dict[str, Any],
    name: str,
    version: int,
    keep: list[str] | None,
    reasons: bool,
) -> DataFrame:
    """``df.mapInPandas`` with the executor-side scorer (plain data in its closure) and schema."""
    keep = list(keep or [])
    scorer = functools.partial(
        _score_batches, **shipped, name=name, version=version, keep=keep, reasons=reasons
    )
    return df.mapInPandas(scorer, output_schema(df, keep, reasons))


def _score_batches(
    batches: Iterator[pd.DataFrame],
    *,
    files: dict[str, bytes] | None,
    folder: str | None,
    sha256: str,
    name: str,
    version: int,
    keep: list[str],
    reasons: bool,
) -> Iterator[pd.DataFrame]:
    """Runs on an executor: score each pandas batch of a partition with the verified engine."""
    engine: ServedModel | None = None
    for batch in batches:
        if batch.empty:
            continue
        engine = engine or _executor_engine(files, folder, sha256, name, version)
        scored = _output(engine, pa.Table.from_pandas(batch, preserve_index=False), [], reasons)
        yield pd.concat([batch[keep].reset_index(drop=True), scored.to_pandas()], axis=1)


def _executor_engine(
    files: dict[str, bytes] | None, folder: str | None, sha256: str, name: str, version: int
) -> ServedModel:
    """This executor process's engine for the model, rebuilt once and hash-checked."""
    try:
        if folder is None:
            return shipped_engine(files or {}, sha256, name, version)
        if (sha256, folder) not in _FOLDERS:
            model = KeelModel.load(Path(folder), expected_sha256=sha256)
            _FOLDERS[sha256, folder] = ServedModel(model, name, version)
        return _FOLDERS[sha256, folder]
    except IntegrityError as err:
        raise IntegrityError(f"a Spark executor refused model {name} v{version}: {err}") from err


def _pyspark_types() -> ModuleType:
    """pyspark.sql.types, or a clear error where pyspark is not installed."""
    try:
        from pyspark.sql import types
    except ImportError as err:
        raise EngineError(
            f"keel.spark needs pyspark ({err}); install it where Spark runs: pip install pyspark"
        ) from err
    return types
