"""The Keel model artifact: a folder of JSON and LightGBM text, every file hashed.

``model.json`` is the manifest: family, features, preprocessing, target, threshold and
the sha256 of each other file. Its own sha256 therefore fingerprints the whole model.
Loading checks every hash and refuses pickle bytes, whatever a file is called.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd

from keel.errors import IntegrityError
from keel.io.files import write_bytes_atomic
from keel.models.gbdt import LightGBMScorer
from keel.models.logistic import LogisticScorer
from keel.models.preprocess import Preprocessor

FORMAT = "keel-model/1"
MANIFEST = "model.json"
Scorer = Union[LogisticScorer, LightGBMScorer]
_SCORERS: dict[str, type[LogisticScorer] | type[LightGBMScorer]] = {
    "logistic": LogisticScorer,
    "lightgbm": LightGBMScorer,
}


def sha256_bytes(raw: bytes) -> str:
    """Hex sha256 of ``raw``."""
    return hashlib.sha256(raw).hexdigest()


def looks_like_pickle(raw: bytes) -> bool:
    """True for bytes that start like a pickle stream (protocol 2 or later, or joblib's zlib)."""
    return (len(raw) >= 2 and raw[0] == 0x80 and 2 <= raw[1] <= 5) or raw[:2] in (b"x\x9c", b"x\xda")


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
    top_k: int = 4

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
        return np.asarray(self.scorer.probability(self.preprocessor.transform(frame)), dtype=np.float64)

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
        """Write the artifact into ``directory``; returns the manifest's sha256 (the model's fingerprint)."""
        files = self.files()
        for name, raw in files.items():
            write_bytes_atomic(directory / name, raw)
        return sha256_bytes(files[MANIFEST])

    @classmethod
    def load(cls, directory: Path, *, expected_sha256: str | None = None) -> KeelModel:
        """Read an artifact, checking every file's hash; refuses pickles and tampered files."""
        manifest_raw = _read(directory / MANIFEST)
        return cls.from_files(manifest_raw, lambda name: _read(directory / name), where=str(directory),
                              expected_sha256=expected_sha256)

    @classmethod
    def from_files(cls, manifest_raw: bytes, read: Callable[[str], bytes], *, where: str = "model",
                   expected_sha256: str | None = None) -> KeelModel:
        """Rebuild from the manifest's bytes and a reader of the other files (:meth:`files`), hash-checked."""
        if expected_sha256 is not None and sha256_bytes(manifest_raw) != expected_sha256:
            raise IntegrityError(
                f"{where}/{MANIFEST}: sha256 {sha256_bytes(manifest_raw)} does not match the "
                f"registered {expected_sha256}; the model was changed after registration"
            )
        try:
            manifest = json.loads(manifest_raw)
        except ValueError as err:
            raise IntegrityError(f"{where}/{MANIFEST} is not JSON: {err}") from err
        if manifest.get("format") != FORMAT or manifest.get("family") not in _SCORERS:
            raise IntegrityError(
                f"{where}/{MANIFEST}: format {manifest.get('format')!r} family {manifest.get('family')!r} "
                f"is not a Keel model; expected format {FORMAT!r} and a family in {sorted(_SCORERS)}"
            )
        scorer_cls = _SCORERS[manifest["family"]]
        body_name = scorer_cls.file_name
        body = read(body_name)
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
            top_k=int(manifest.get("reasons", {}).get("top_k", 4)),
        )


def _read(path: Path) -> bytes:
    if not path.is_file():
        raise IntegrityError(f"model file {path} is missing")
    raw = path.read_bytes()
    if looks_like_pickle(raw):
        raise IntegrityError(f"{path} holds pickle bytes; Keel loads only JSON and LightGBM text models")
    return raw
