"""The MLflow pyfunc a Keel export loads: hash-checked Keel files, scored as ``keel score`` does.

MLflow runs the exported code file (:mod:`keel.export.pyfunc_entry`), which hands it a
:class:`KeelPyfunc`. Its ``load_context`` reads the Keel model files from the exported
artifacts and checks their sha256 against the fingerprint recorded at export (in the
``model_config`` of the MLmodel file); ``predict`` scores each row through
:meth:`~keel.serving.served.ServedModel.score_frame`, the path of ``keel score``, and answers
with the same columns that command writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

from keel.errors import IntegrityError
from keel.models.artifact import KeelModel
from keel.serving.served import ServedModel

ARTIFACT = "keel_model"  # the artifacts entry holding model.json and the scorer's file
OUTPUT_COLUMNS = ("probability", "decision", "reasons", "model", "version")


def load_exported(folder: Path, config: dict[str, Any]) -> ServedModel:
    """The exported files in ``folder`` as a served model, after checking them against ``config``.

    ``config`` is the export's model_config: ``model_sha256``, ``name`` and ``version``.
    """
    expected = config.get("model_sha256")
    if not isinstance(expected, str):
        raise IntegrityError(
            f"{folder}: the MLmodel's model_config records no model_sha256; an export without "
            "the fingerprint recorded at export cannot be verified, so it is not loaded"
        )
    try:
        model = KeelModel.load(folder, expected_sha256=expected)
    except IntegrityError as error:
        raise IntegrityError(
            f"the exported Keel model does not match the sha256 recorded at export: {error}"
        ) from error
    return ServedModel(model, str(config["name"]), int(config["version"]))


def decisions_frame(engine: ServedModel, frame: pd.DataFrame) -> pd.DataFrame:
    """Probability, decision, reasons (JSON, as ``keel score`` writes them), model and version."""
    decisions = engine.score_frame(frame.reset_index(drop=True), reasons=True)
    return pd.DataFrame(
        {
            "probability": pd.Series([d["probability"] for d in decisions], dtype="float64"),
            "decision": pd.Series([d["decision"] for d in decisions], dtype="object"),
            "reasons": pd.Series(
                [orjson.dumps(d["reasons"]).decode() for d in decisions], dtype="object"
            ),
            "model": pd.Series([engine.name] * len(decisions), dtype="object"),
            "version": pd.Series([engine.version] * len(decisions), dtype="int64"),
        },
        columns=list(OUTPUT_COLUMNS),
    )


class KeelPyfunc(PythonModel):
    """A Keel model version as an MLflow python_function model (no pickle anywhere)."""

    def __init__(self) -> None:
        self.engine: ServedModel | None = None

    def load_context(self, context: PythonModelContext) -> None:
        """Load and verify the exported Keel files (an IntegrityError when they were changed)."""
        folder = context.artifacts.get(ARTIFACT) if context.artifacts else None
        if not folder:
            raise IntegrityError(
                f"the export has no '{ARTIFACT}' artifact; it was not written by keel export mlflow"
            )
        self.engine = load_exported(Path(folder), dict(context.model_config or {}))

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Score a table of records as ``keel score`` does (MLflow makes other inputs a table)."""
        if self.engine is None:
            raise IntegrityError("the Keel model was not loaded (load_context did not run)")
        return decisions_frame(self.engine, pd.DataFrame(model_input))
