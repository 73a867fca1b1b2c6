"""Evaluate a registered model version: on its own test split, or on any new labeled data."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from keel.errors import DataError
from keel.evaluation.metrics import binary_metrics, gains_table
from keel.features.cleaning import target_vector
from keel.io.files import write_text_atomic
from keel.lifecycle.run import prepare_data
from keel.registry.project import ProjectStore
from keel.spec import ProjectSpec
from keel.training.split import split_rows


@dataclass(frozen=True)
class EvaluationResult:
    """Metrics of one version on one dataset, and where the report went."""

    model_name: str
    version: int
    data: str
    rows: int
    metrics: dict[str, float]
    gains: list[dict[str, Any]]
    report: Path


def evaluate_version(
    spec: ProjectSpec,
    *,
    project_dir: Path,
    version: int | str = "latest",
    source: str | None = None,
) -> EvaluationResult:
    """Score a registered version (hash-checked on load) and measure it.

    Without ``source`` it re-creates the version's own test split, which needs the very
    data it was trained on (checked by sha256). With ``source`` every row of that file
    is scored after passing the same contract and cleaning.
    """
    registry = ProjectStore.of(spec, project_dir).registry()
    model, info = registry.load_model(spec.model_name(), version)
    data = prepare_data(spec, source)
    y = target_vector(data.frame, spec).to_numpy()
    if source is None:
        trained_on = info.tag("data_sha256")
        if trained_on != data.table.sha256:
            raise DataError(
                f"{spec.data.source} has sha256 {data.table.sha256}, but version {info.version} "
                f"was trained on {trained_on}; its test split cannot be re-created. Pass the data "
                "to evaluate on explicitly."
            )
        time = data.frame[spec.data.time_column] if spec.data.time_column else None
        rows = split_rows(y, spec.split, seed=spec.seed, time=time).test
        label = "test split"
    else:
        rows = np.arange(len(y))
        label = source
    frame = data.frame.iloc[rows]
    score = model.predict_proba(frame)
    metrics = binary_metrics(y[rows], score)
    gains = gains_table(y[rows], score)
    report = (
        project_dir / "evaluations" / info.name / f"v{info.version}-{data.table.sha256[:12]}.json"
    )
    write_text_atomic(
        report,
        json.dumps(
            {
                "model_name": info.name,
                "version": info.version,
                "data": label,
                "data_sha256": data.table.sha256,
                "rows": len(rows),
                "evaluated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "metrics": metrics,
                "gains": gains,
            },
            indent=2,
        ),
    )
    return EvaluationResult(info.name, info.version, label, len(rows), metrics, gains, report)
