"""Assemble the model card's content from a training outcome (pure: builds a dict)."""

from __future__ import annotations

from typing import Any

from keel.features.cleaning import CleaningSummary
from keel.spec import ProjectSpec
from keel.training.trainer import TrainingOutcome


def build_card(
    *,
    spec: ProjectSpec,
    outcome: TrainingOutcome,
    metrics: dict[str, dict[str, float]],
    gains: list[dict[str, Any]],
    learning_curve: list[dict[str, Any]],
    fairness: list[dict[str, Any]],
    gates: list[dict[str, Any]],
    cleaning: CleaningSummary,
    data_sha256: str,
    data_format: str,
    positive_rate: float,
    run: dict[str, Any],
    environment: dict[str, str],
) -> dict[str, Any]:
    """The model card as a JSON-ready dict; ``run`` holds name, version, run id, times and URIs."""
    contract = [
        {"column": name, **rule.model_dump(exclude_none=False)} for name, rule in spec.contract.columns.items()
    ]
    return {
        "title": f"Model card: {spec.project}",
        **run,
        "purpose": spec.model_card.purpose,
        "intended_use": spec.model_card.intended_use,
        "owner": spec.model_card.owner,
        "limitations": list(spec.model_card.limitations),
        "data": {
            "source": spec.data.source,
            "sha256": data_sha256,
            "format": data_format,
            "rows_read": cleaning.rows_in,
            "rows_used": cleaning.rows_out,
            "duplicates_dropped": cleaning.duplicates_dropped,
            "recoded": cleaning.recoded,
            "positive_class": spec.target.positive,
            "positive_rate": positive_rate,
            "contract": contract,
            "split": {"method": spec.split.method, **outcome.split.sizes()},
        },
        "method": {
            "family": outcome.family,
            "features": outcome.model.features,
            "derived": dict(spec.features.derived),
            "protected": list(spec.protected),
            "categorical": list(outcome.model.preprocessor.categorical),
            "params": outcome.params,
            "seed": spec.seed,
        },
        "tuning": outcome.tuning_summary(spec.tuning.metric),
        "metrics": metrics,
        "diagnostics": {
            "train_validation_gap": metrics["train"]["auc"] - metrics["validation"]["auc"],
            "train_test_gap": metrics["train"]["auc"] - metrics["test"]["auc"],
            "learning_curve": learning_curve,
        },
        "fairness": fairness,
        "gates": gates,
        "gains": gains,
        "environment": environment,
    }
