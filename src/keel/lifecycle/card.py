"""Assemble the model card's content from a training outcome (pure: builds dicts)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from keel.evaluation.bootstrap import bootstrap_difference, bootstrap_intervals
from keel.evaluation.metrics import binary_metrics
from keel.explain.contributions import Contributions
from keel.explain.importance import Dependence, Importance
from keel.explain.reasons import display_value, reason_frequency, top_reasons
from keel.features.cleaning import CleaningSummary
from keel.models.artifact import KeelModel
from keel.reports.model_card import compare_metrics
from keel.spec import ProjectSpec
from keel.training.trainer import TrainingOutcome

DEPENDENCE_FEATURES = 4
EXAMPLES = 4
BOOTSTRAP_ROUNDS = 1000
INTERVAL_LEVEL = 0.95
INTERVAL_METRICS = ("auc", "gini", "ks", "average_precision", "brier")


def card_dir(project_dir: Path, name: str, version: int) -> Path:
    """Where a version's model card lives: ``project_dir/cards/<name>/v<version>``."""
    return project_dir / "cards" / name / f"v{version}"


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
    explanations: dict[str, Any],
    reasons: dict[str, Any],
    lifecycle: dict[str, Any],
    daily: list[dict[str, Any]] | None = None,
    intervals: dict[str, Any] | None = None,
    baseline: dict[str, Any] | None = None,
    champion: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The model card as a JSON-ready dict; ``run`` holds name, version, run id, times and URIs.

    ``explanations``, ``reasons`` and ``lifecycle`` are the sections built by
    :func:`explanations_section`, :func:`reasons_section` and
    :func:`keel.lifecycle.card_refresh.lifecycle_section`; ``intervals`` and ``baseline`` those
    of :func:`intervals_section` and :func:`baseline_section`. ``champion``, when given, is the
    current champion scored on the same test rows: ``{"version", "test": {metric: value}}``
    and optionally ``"family"``, ``"note"`` and ``"difference"`` (this version minus the
    champion, ``{metric: {"value", "low", "high"}}``, e.g. from
    :func:`keel.evaluation.bootstrap.bootstrap_difference`); the card then also holds
    ``comparison``, one row per common test metric.
    """
    contract = [
        {"column": name, **rule.model_dump(exclude_none=False)}
        for name, rule in spec.contract.columns.items()
    ]
    return {
        "title": f"Model card: {spec.project}",
        **run,
        "description": spec.description,
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
            "split": {
                "method": spec.split.method,
                **outcome.split.sizes(),
                "folds": len(outcome.split.folds),
                "settings": spec.split.model_dump(mode="json", exclude_defaults=True),
            },
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
        "intervals": intervals,
        "baseline": baseline,
        "champion": champion,
        "comparison": compare_metrics(metrics["test"], champion.get("test") or {})
        if champion
        else None,
        "daily": {
            "rows": daily or [],
            "precision_at_k": spec.evaluation.precision_at_k.model_dump()
            if spec.evaluation.precision_at_k
            else None,
        },
        "diagnostics": {
            "train_validation_gap": metrics["train"]["auc"] - metrics["validation"]["auc"],
            "train_test_gap": metrics["train"]["auc"] - metrics["test"]["auc"],
            "learning_curve": learning_curve,
        },
        "fairness": fairness,
        "gates": gates,
        "gains": gains,
        "explanations": explanations,
        "reasons": reasons,
        "lifecycle": lifecycle,
        "environment": environment,
    }


def intervals_section(
    y: np.ndarray,
    p: np.ndarray,
    *,
    seed: int,
    rounds: int = BOOTSTRAP_ROUNDS,
    level: float = INTERVAL_LEVEL,
) -> dict[str, Any]:
    """The test metrics with their stratified percentile-bootstrap intervals.

    See :mod:`keel.evaluation.bootstrap`.
    """
    return {
        "method": "stratified percentile bootstrap",
        "level": level,
        "rounds": rounds,
        "seed": seed,
        "rows": int(len(y)),
        "metrics": bootstrap_intervals(
            y, p, metrics=INTERVAL_METRICS, rounds=rounds, seed=seed, level=level
        ),
    }


def baseline_section(
    outcome: TrainingOutcome,
    p_test: np.ndarray,
    *,
    metric: str,
    seed: int,
    rounds: int = BOOTSTRAP_ROUNDS,
    level: float = INTERVAL_LEVEL,
) -> dict[str, Any] | None:
    """The logistic baseline on the test rows if the run tuned it beside another family (else None).

    The baseline is the logistic family's best trial as tuning left it: fitted on the same
    training rows (refit there after fold-wise tuning), so scoring it on the test rows needs
    no refit. ``difference`` is the chosen model minus the baseline, each metric's interval
    from a paired bootstrap (both models on the same resamples of ``p_test``'s rows).
    """
    result = outcome.results.get("logistic")
    if result is None or len(outcome.results) < 2:
        return None
    y = outcome.y_test
    p_base = result.model.probability(outcome.X_test)
    return {
        "family": "logistic",
        "chosen": outcome.family == "logistic",
        "params": dict(result.best_params),
        "note": (
            "The logistic family's best tuning trial, fitted on the same training rows as the "
            "chosen model and scored on the same test rows."
        ),
        "validation": {metric: result.best_value},
        "test": binary_metrics(y, p_base),
        "intervals": bootstrap_intervals(
            y, p_base, metrics=INTERVAL_METRICS, rounds=rounds, seed=seed, level=level
        ),
        "difference": bootstrap_difference(
            y, p_test, p_base, metrics=INTERVAL_METRICS, rounds=rounds, seed=seed, level=level
        ),
    }


def explanations_section(
    model: KeelModel, ranking: Sequence[Importance], dependences: Sequence[Dependence], rows: int
) -> dict[str, Any]:
    """Each feature's global importance and reason text, and the top features' dependence bins."""
    return {
        "rows": rows,
        "importance": [
            {"rank": rank, **item.to_dict(), "text": model.reason_text(item.feature)}
            for rank, item in enumerate(ranking, 1)
        ],
        "dependence": [
            {
                "feature": d.feature,
                "text": model.reason_text(d.feature),
                "categorical": d.categories is not None,
                "bins": d.bins(),
            }
            for d in dependences
        ],
    }


def reasons_section(
    spec: ProjectSpec,
    model: KeelModel,
    contributions: Contributions,
    X: np.ndarray,
    score: np.ndarray,
    row_ids: Sequence[Any],
) -> dict[str, Any]:
    """Reason texts, how often each reason is given on the adverse test rows, and worked examples.

    A row is adverse when its score reaches the model's threshold; ``row_ids`` name the
    rows (the data's id column, or their position).
    """
    adverse = np.flatnonzero(score >= model.threshold)
    adverse = adverse[np.argsort(-score[adverse], kind="stable")]
    given = top_reasons(
        Contributions(contributions.features, contributions.values[adverse], contributions.base),
        X[adverse],
        model,
    )
    picks = np.unique(
        np.linspace(0, adverse.size - 1, min(EXAMPLES, adverse.size)).round().astype(int)
    )
    return {
        "top_k": model.top_k,
        "threshold": model.threshold,
        "rows": int(score.size),
        "adverse_rows": int(adverse.size),
        "without_reason": sum(not reasons for reasons in given),
        "texts": [
            {"feature": name, "text": model.reason_text(name), "source": _text_source(spec, name)}
            for name in model.features
        ],
        "frequency": reason_frequency(given),
        "examples": [
            {
                "row": row_ids[adverse[i]],
                "probability": float(score[adverse[i]]),
                "decision": "adverse",
                "reasons": [reason.to_dict() for reason in given[i]],
                "values": {
                    name: display_value(model, j, X[adverse[i], j])
                    for j, name in enumerate(model.features)
                },
            }
            for i in picks
        ],
    }


def _text_source(spec: ProjectSpec, name: str) -> str:
    """Where a feature's reason text comes from (see :meth:`ProjectSpec.reason_texts`)."""
    if name in spec.reasons.texts:
        return "spec"
    column = spec.contract.columns.get(name)
    return "contract description" if column is not None and column.description else "feature name"
