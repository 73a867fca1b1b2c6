"""A served model: one verified version scoring probability, decision and adverse-action reasons.

The API (JSON records) and batch scoring (table chunks) both end in
:meth:`ServedModel.score_matrix`, so the same row gets the same score and reasons either way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from keel.contracts.validate import read_missing_codes
from keel.errors import IntegrityError
from keel.explain.contributions import Explainer
from keel.explain.reasons import top_reasons
from keel.models.artifact import MANIFEST, KeelModel
from keel.spec import ColumnContract


class ServedModel:
    """One loaded, verified model version, ready to score.

    The explainer is compiled at construction.
    """

    def __init__(self, model: KeelModel, name: str, version: int) -> None:
        self.model = model
        self.name = name
        self.version = version
        self.explainer = Explainer(model)
        contract = model.metadata.get("contract") or {}
        self._missing_codes = {
            column: ColumnContract(**entry)
            for column, entry in contract.items()
            if entry.get("missing_values")
        }
        self.score_records([{}])  # compile and warm every path before the first real request

    def score_records(
        self, records: list[dict[str, Any]], *, reasons: bool = True
    ) -> list[dict[str, Any]]:
        """Decisions for JSON-like records (already validated against the contract)."""
        return self.score_matrix(
            self.model.preprocessor.transform_records(records), reasons=reasons
        )

    def score_frame(self, frame: pd.DataFrame, *, reasons: bool = True) -> list[dict[str, Any]]:
        """Decisions for the rows of a table; codes the contract reads as missing become missing."""
        for column, rule in self._missing_codes.items():
            if column in frame.columns:
                frame = frame.assign(**{column: read_missing_codes(frame[column], rule)})
        return self.score_matrix(self.model.preprocessor.transform(frame), reasons=reasons)

    def score_matrix(self, X: np.ndarray, *, reasons: bool = True) -> list[dict[str, Any]]:
        """Probability, decision at the model's threshold and (optionally) top-k reasons per row."""
        probability = np.asarray(self.model.scorer.probability(X), dtype=np.float64)
        given = top_reasons(self.explainer.explain_matrix(X), X, self.model) if reasons else None
        return [
            {
                "probability": float(p),
                "decision": "adverse" if p >= self.model.threshold else "favourable",
                **({"reasons": [r.to_dict() for r in given[i]]} if given is not None else {}),
                "model": self.name,
                "version": self.version,
            }
            for i, p in enumerate(probability)
        ]


_SHIPPED: dict[str, ServedModel] = {}  # per process: manifest sha256 -> engine


def shipped_engine(files: dict[str, bytes], sha256: str, name: str, version: int) -> ServedModel:
    """This process's engine for model files shipped as bytes (a Dask worker, a Spark executor).

    Built once per fingerprint; the files are checked against ``sha256`` when it is built.
    """
    if sha256 not in _SHIPPED:
        where = f"{name} v{version}"
        if MANIFEST not in files:
            raise IntegrityError(f"{where}: no {MANIFEST} among {sorted(files)}")
        model = KeelModel.from_files(
            files[MANIFEST],
            files.__getitem__,
            names=files.keys(),
            where=where,
            expected_sha256=sha256,
        )
        _SHIPPED[sha256] = ServedModel(model, name, version)
    return _SHIPPED[sha256]
