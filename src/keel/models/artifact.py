"""The Keel model artifact: a folder of JSON and LightGBM text, every file hashed.

``model.json`` is the manifest: family, features, preprocessing, target, threshold and
the sha256 of each other file. Its own sha256 therefore fingerprints the whole model.
Loading always checks that fingerprint and every file's hash, refuses pickle bytes whatever
a file is called, and refuses a folder holding anything but the manifest and the scorer's
one file (extra, hidden, folder or symlink entries), or a file over :data:`MAX_FILE_BYTES`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import IntegrityError
from keel.io.files import write_bytes_atomic
from keel.models.gbdt import LightGBMScorer
from keel.models.logistic import LogisticScorer
from keel.models.preprocess import Preprocessor
from keel.spec import DEFAULT_TOP_K

FORMAT = "keel-model/1"
MANIFEST = "model.json"
Scorer = LogisticScorer | LightGBMScorer
_SCORERS: dict[str, type[LogisticScorer] | type[LightGBMScorer]] = {
    "logistic": LogisticScorer,
    "lightgbm": LightGBMScorer,
}
BODY_FILES = tuple(sorted(cls.file_name for cls in _SCORERS.values()))
MAX_FILE_BYTES = 1 << 30  # 1 GiB: no model file may be larger; checked before any byte is read
_SHA256 = re.compile(r"[0-9a-f]{64}")


def sha256_bytes(raw: bytes) -> str:
    """Hex sha256 of ``raw``."""
    return hashlib.sha256(raw).hexdigest()


def looks_like_pickle(raw: bytes) -> bool:
    """True for bytes that start like a pickle stream (protocol 2 or later, or joblib's zlib)."""
    return (len(raw) >= 2 and raw[0] == 0x80 and 2 <= raw[1] <= 5) or raw[:2] in (
        b"x\x9c",
        b"x\xda",
    )


@dataclass(frozen=True)
class Entry:
    """One entry of a model folder as listed before anything is read.

    ``kind`` is file, dir, symlink or other.
    """

    name: str
    kind: str
    size: int


def list_folder(directory: Path) -> list[Entry]:
    """Every entry of ``directory`` (hidden ones too), without following symlinks."""
    try:
        with os.scandir(directory) as found:
            return [Entry(e.name, _kind(e), e.stat(follow_symlinks=False).st_size) for e in found]
    except (FileNotFoundError, NotADirectoryError):
        raise IntegrityError(f"model folder {directory} is missing") from None


def check_listing(entries: Iterable[Entry], *, where: str) -> list[str]:
    """Refuse symlinks, entries but model.json and a scorer file, and files over MAX_FILE_BYTES.

    Returns the entries' names, for :meth:`KeelModel.from_files`.
    """
    entries = list(entries)
    links = sorted(e.name for e in entries if e.kind == "symlink")
    if links:
        raise IntegrityError(
            f"{where}: {links} are symbolic links; a Keel model folder holds only regular files"
        )
    unexpected = sorted(
        e.name + ("/" if e.kind == "dir" else "")
        for e in entries
        if e.kind != "file" or e.name not in (MANIFEST, *BODY_FILES)
    )
    if unexpected:
        raise IntegrityError(
            f"{where}: unexpected entries {unexpected}; "
            f"a Keel model folder holds only {MANIFEST} and "
            f"its scorer's one file (one of {list(BODY_FILES)})"
        )
    big = sorted(f"{e.name} ({e.size} bytes)" for e in entries if e.size > MAX_FILE_BYTES)
    if big:
        raise IntegrityError(
            f"{where}: {big} exceed the limit of {_limit()} per model file; refused before reading"
        )
    names = [e.name for e in entries]
    if MANIFEST not in names:
        raise IntegrityError(f"model file {where}/{MANIFEST} is missing")
    return names


def read_file(path: Path) -> bytes:
    """The bytes of one regular model file.

    A symlink or a file over MAX_FILE_BYTES is refused (it reads at most that).
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise IntegrityError(f"model file {path} is missing") from None
    except OSError as err:
        raise IntegrityError(
            f"model file {path} cannot be opened as a regular file (not a symlink): {err}"
        ) from err
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise IntegrityError(f"model file {path} is not a regular file")
        raw = handle.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise IntegrityError(f"model file {path} is over the limit of {_limit()} per model file")
    return raw


@dataclass
class KeelModel:
    """A trained model: preprocessing plus one family's scorer, with its decision rule."""

    preprocessor: Preprocessor
    scorer: Scorer
    target: str
    positive: Any
    threshold: float
    metadata: dict[str, Any] = field(default_factory=dict)
    reason_texts: dict[str, str] = field(default_factory=dict)
    top_k: int = DEFAULT_TOP_K

    @property
    def family(self) -> str:
        """The model family: 'logistic' or 'lightgbm'."""
        return self.scorer.family

    @property
    def features(self) -> list[str]:
        """The input columns, in model order."""
        return self.preprocessor.features

    def reason_text(self, feature: str) -> str:
        """The adverse-action words for ``feature`` (its name when the spec gave none)."""
        return self.reason_texts.get(feature, feature)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Probability of the positive class for each row of ``frame``."""
        return np.asarray(
            self.scorer.probability(self.preprocessor.transform(frame)), dtype=np.float64
        )

    def files(self) -> dict[str, bytes]:
        """Every file of the artifact, manifest included, as bytes."""
        body = self.scorer.to_bytes()
        manifest = {
            "format": FORMAT,
            "family": self.family,
            "target": self.target,
            "positive": self.positive,
            "threshold": self.threshold,
            "preprocessor": self.preprocessor.to_dict(),
            "files": {self.scorer.file_name: sha256_bytes(body)},
            "metadata": self.metadata,
            "reasons": {"texts": self.reason_texts, "top_k": self.top_k},
        }
        raw = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode("utf-8")
        return {MANIFEST: raw, self.scorer.file_name: body}

    def save(self, directory: Path) -> str:
        """Write the artifact into ``directory``.

        Returns the manifest's sha256 (the model's fingerprint).
        """
        files = self.files()
        for name, raw in files.items():
            write_bytes_atomic(directory / name, raw)
        return sha256_bytes(files[MANIFEST])

    @classmethod
    def load(cls, directory: Path, *, expected_sha256: str) -> KeelModel:
        """Read an artifact folder, checking its listing, its fingerprint and every file's hash.

        See :meth:`from_files`. ``expected_sha256`` is required: the fingerprint :meth:`save`
        returned or the registry recorded.
        """
        where = str(directory)
        names = check_listing(list_folder(directory), where=where)
        return cls.from_files(
            read_file(directory / MANIFEST),
            lambda name: read_file(directory / name),
            names=names,
            where=where,
            expected_sha256=expected_sha256,
        )

    @classmethod
    def from_files(
        cls,
        manifest_raw: bytes,
        read: Callable[[str], bytes],
        *,
        names: Collection[str],
        expected_sha256: str,
        where: str = "model",
    ) -> KeelModel:
        """Rebuild from the manifest's bytes and a reader of the other files (:meth:`files`).

        Every file is hash-checked. ``names`` are the entries the artifact holds: any but
        model.json and the manifest's scorer file is refused. ``expected_sha256`` (the
        manifest's registered sha256) is required and always checked.
        """
        if not isinstance(expected_sha256, str) or not _SHA256.fullmatch(expected_sha256):
            raise IntegrityError(
                f"{where}: expected sha256 {expected_sha256!r} is not 64 lowercase hex digits; "
                "the model cannot be verified, so it is not loaded"
            )
        _refuse_pickle(manifest_raw, f"{where}/{MANIFEST}")
        if sha256_bytes(manifest_raw) != expected_sha256:
            raise IntegrityError(
                f"{where}/{MANIFEST}: sha256 {sha256_bytes(manifest_raw)} does not match the "
                f"registered {expected_sha256}; the model was changed after registration"
            )
        try:
            manifest = json.loads(manifest_raw)
        except ValueError as err:
            raise IntegrityError(f"{where}/{MANIFEST} is not JSON: {err}") from err
        if (
            not isinstance(manifest, dict)
            or manifest.get("format") != FORMAT
            or manifest.get("family") not in _SCORERS
        ):
            found = manifest if isinstance(manifest, dict) else {}
            raise IntegrityError(
                f"{where}/{MANIFEST}: format {found.get('format')!r} "
                f"family {found.get('family')!r} "
                f"is not a Keel model; expected format {FORMAT!r} "
                f"and a family in {sorted(_SCORERS)}"
            )
        scorer_cls = _SCORERS[manifest["family"]]
        body_name = scorer_cls.file_name
        unexpected = sorted(set(names) - {MANIFEST, body_name})
        if unexpected:
            raise IntegrityError(
                f"{where}: unexpected entries {unexpected}; "
                f"a {manifest['family']} model holds only "
                f"{MANIFEST} and {body_name}"
            )
        if body_name not in names:
            raise IntegrityError(f"model file {where}/{body_name} is missing")
        body = read(body_name)
        _refuse_pickle(body, f"{where}/{body_name}")
        recorded = manifest["files"].get(body_name)
        if sha256_bytes(body) != recorded:
            raise IntegrityError(
                f"{where}/{body_name}: sha256 {sha256_bytes(body)} does not match {recorded} "
                "recorded in model.json; refusing to load a changed model"
            )
        return cls(
            preprocessor=Preprocessor.from_dict(manifest["preprocessor"]),
            scorer=scorer_cls.from_bytes(body),
            target=manifest["target"],
            positive=manifest["positive"],
            threshold=float(manifest["threshold"]),
            metadata=manifest.get("metadata", {}),
            reason_texts=dict(manifest.get("reasons", {}).get("texts", {})),
            top_k=int(manifest.get("reasons", {}).get("top_k", DEFAULT_TOP_K)),
        )


def _kind(entry: os.DirEntry[str]) -> str:
    """file, dir, symlink or other (a FIFO, socket or device), never following a link."""
    if entry.is_symlink():
        return "symlink"
    if entry.is_dir(follow_symlinks=False):
        return "dir"
    return "file" if entry.is_file(follow_symlinks=False) else "other"


def _limit() -> str:
    """The size limit as errors name it: bytes, GiB and the constant."""
    return f"{MAX_FILE_BYTES} bytes ({MAX_FILE_BYTES / 2**30:g} GiB, MAX_FILE_BYTES)"


def _refuse_pickle(raw: bytes, where: str) -> None:
    """Refuse bytes that start like a pickle, whatever the file is called."""
    if looks_like_pickle(raw):
        raise IntegrityError(
            f"{where} holds pickle bytes; Keel loads only JSON and LightGBM text models"
        )
