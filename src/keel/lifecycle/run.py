"""The main flow: data -> contract -> cleaning -> training -> evaluation -> registry -> model card.

Nothing is written before the data has passed its contract and a model has been
trained and evaluated; a failure after the run is opened marks it FAILED in MLflow
and removes any half-made model version, so the registry only ever holds complete
versions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from keel.contracts.validate import ContractReport, enforce_contract
from keel.engine import Engine
from keel.evaluation.daily import daily_metrics
from keel.evaluation.fairness import fairness_report
from keel.evaluation.gates import measures_of, spec_thresholds
from keel.evaluation.metrics import binary_metrics, gains_table
from keel.explain.contributions import Explainer
from keel.explain.importance import dependence, importance
from keel.features.cleaning import CleaningSummary, clean, target_vector
from keel.features.offline import add_features
from keel.io.tables import LoadedTable, TableFormat, read_table
from keel.io.times import as_of_time, naive_utc
from keel.lifecycle.card import (
    DEPENDENCE_FEATURES,
    baseline_section,
    build_card,
    card_dir,
    explanations_section,
    intervals_section,
    reasons_section,
)
from keel.lifecycle.card_refresh import lifecycle_section
from keel.lifecycle.provenance import code_version, library_versions
from keel.registry.principal import Principal
from keel.registry.project import ProjectStore
from keel.registry.store import VersionInfo
from keel.spec import ProjectSpec, dump_spec
from keel.training.distributed import check_cluster_tuning
from keel.training.trainer import TrainingOutcome, learning_curve, train_model
from keel.training.tuning import TrialCallback, fit_family, validation_score

StageCallback = Callable[[str], None]


@dataclass(frozen=True)
class PreparedData:
    """Data that passed its contract and the spec's cleaning rules."""

    frame: pd.DataFrame
    table: LoadedTable
    contract: ContractReport
    cleaning: CleaningSummary


@dataclass(frozen=True)
class RunResult:
    """What a run produced and where to find it."""

    model_name: str
    version: int
    run_id: str
    family: str
    metrics: dict[str, dict[str, float]]
    gates: list[dict[str, Any]]
    model_sha256: str
    tracking_uri: str
    project_dir: Path
    card_html: Path | None
    card_json: Path | None
    author_verified: bool = False


def prepare_data(
    spec: ProjectSpec, source: str | None = None, *, engine: Engine | None = None
) -> PreparedData:
    """Read the spec's data (or ``source``), enforce the contract and clean it.

    Then add the window and calendar features.
    """
    url = source or spec.data.source
    table = read_table(
        url,
        spec.data.file_format() if source is None else _format_of(url, spec),
        max_columns=spec.data.max_columns,
    )
    frame = table.frame
    if spec.data.until is not None:  # rows from then on are never read, not even by the contract
        times = naive_utc(frame[spec.data.time_column])
        frame = frame[(times < as_of_time(spec.data.until)).to_numpy()].reset_index(drop=True)
    typed, report = enforce_contract(frame, spec.contract)
    frame, cleaning = clean(typed, spec)
    return PreparedData(add_features(frame, spec, engine=engine), table, report, cleaning)


def _format_of(url: str, spec: ProjectSpec) -> TableFormat:
    return spec.data.model_copy(update={"source": url, "format": None}).file_format()


def split_metrics(outcome: TrainingOutcome) -> tuple[dict[str, dict[str, float]], np.ndarray]:
    """Metrics on train, validation and test, and the test scores.

    Validation is scored on predictions no fit trained on: out of fold when tuning used folds.
    """
    scorer, data = outcome.model.scorer, outcome.matrices
    p_test = scorer.probability(outcome.X_test)
    metrics = {
        "train": binary_metrics(data.y_train, scorer.probability(data.X_train)),
        "validation": binary_metrics(*outcome.validation_predictions()),
        "test": binary_metrics(outcome.y_test, p_test),
    }
    return metrics, p_test


def fairness_on_test(
    frame: pd.DataFrame, outcome: TrainingOutcome, p_test: np.ndarray, spec: ProjectSpec
) -> list[dict[str, Any]]:
    """The fairness report on the test rows of ``frame`` (empty without protected columns)."""
    if not spec.protected:
        return []
    return fairness_report(
        frame.iloc[outcome.split.test][spec.protected],
        outcome.y_test,
        p_test,
        threshold=spec.target.threshold,
        fairness=spec.fairness,
    )


def baseline_auc(outcome: TrainingOutcome, spec: ProjectSpec) -> float:
    """The logistic baseline's AUC on the chosen model's test rows (``min_auc_over_baseline``).

    The baseline is the logistic family as the run tuned it, fitted on the same training rows
    as the chosen model (the chosen model itself when logistic won: the margin is then 0;
    refit on the train and validation rows when the chosen model was). When the spec did not
    tune the logistic family, it is a logistic fit with default parameters (C = 1) on the same
    training matrix, so the gate is always judged rather than skipped.
    """
    result = outcome.results.get("logistic")
    if outcome.family == "logistic":
        scorer = outcome.model.scorer
    elif result is not None and "refit" not in outcome.selection:
        scorer = result.model
    else:  # not tuned, or the chosen model was refit on more rows: fit it on those rows too
        params = (
            result.best_params
            if result is not None
            else {"C": 1.0, "max_iter": spec.models.logistic.max_iter}
        )
        scorer = fit_family(
            "logistic", params, outcome.final_matrices(), spec, features=outcome.model.features
        )
    return validation_score("auc", outcome.y_test, scorer.probability(outcome.X_test))


def _daily_metrics(
    spec: ProjectSpec, data: PreparedData, outcome: TrainingOutcome, p_test: np.ndarray
) -> list[dict[str, Any]]:
    """Test metrics per day (and precision@k entities) when the spec asks for them."""
    evaluation = spec.evaluation
    if not (evaluation.by_day or evaluation.precision_at_k) or not spec.data.time_column:
        return []
    rows = data.frame.iloc[outcome.split.test]
    top = evaluation.precision_at_k
    return daily_metrics(
        rows[spec.data.time_column],
        outcome.y_test,
        p_test,
        entity=rows[top.entity] if top else None,
        k=top.k if top else None,
        remove_detected=top.remove_detected if top else True,
    )


def _flat_params(outcome: TrainingOutcome, spec: ProjectSpec) -> dict[str, Any]:
    params = {f"model.{k}": v for k, v in outcome.params.items()}
    params.update(
        {
            "family": outcome.family,
            "seed": spec.seed,
            "features": len(outcome.model.features),
            "tuning.metric": spec.tuning.metric,
            "tuning.trials": spec.tuning.trials,
            **{f"split.{k}": v for k, v in outcome.split.sizes().items()},
        }
    )
    return params


def _interval_metrics(intervals: dict[str, Any]) -> dict[str, float]:
    """Each test metric's bootstrap interval as MLflow metrics (``test_auc_low``, ...)."""
    return {
        f"test_{name}_{end}": float(bounds[end])
        for name, bounds in intervals["metrics"].items()
        for end in ("low", "high")
    }


def _write_card(
    spec: ProjectSpec,
    data: PreparedData,
    outcome: TrainingOutcome,
    metrics: dict[str, dict[str, float]],
    p_test: np.ndarray,
    curve: list[dict[str, Any]],
    fairness: list[dict[str, Any]],
    gates: list[dict[str, Any]],
    lifecycle: dict[str, Any],
    *,
    run: dict[str, Any],
    environment: dict[str, str],
    folder: Path,
    daily: list[dict[str, Any]],
    intervals: dict[str, Any],
    champion: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Explain the test rows once, build the card with its lifecycle so far, write it to ``folder``.

    The card also gets the test metrics' bootstrap intervals, the logistic baseline on the test
    rows (when both families were tuned) and, when given, the ``champion`` on the same rows
    (see :func:`build_card`).
    """
    from keel.reports.model_card import draw_plots, write_model_card

    model, X_test = outcome.model, outcome.X_test
    contributions = Explainer(model).explain_matrix(X_test)
    ranking = importance(contributions)
    dependences = [
        dependence(contributions, X_test, model, item.feature)
        for item in ranking[:DEPENDENCE_FEATURES]
    ]
    test_rows = data.frame.iloc[outcome.split.test]
    row_ids = (
        test_rows[spec.data.id_column] if spec.data.id_column else pd.RangeIndex(len(test_rows))
    ).tolist()
    card = build_card(
        spec=spec,
        outcome=outcome,
        metrics=metrics,
        gains=gains_table(outcome.y_test, p_test),
        learning_curve=curve,
        daily=daily,
        fairness=fairness,
        gates=gates,
        cleaning=data.cleaning,
        data_sha256=data.table.sha256,
        data_format=data.table.format,
        positive_rate=float(target_vector(data.frame, spec).mean()),
        run=run,
        environment=environment,
        explanations=explanations_section(model, ranking, dependences, rows=len(X_test)),
        reasons=reasons_section(spec, model, contributions, X_test, p_test, row_ids),
        lifecycle=lifecycle,
        intervals=intervals,
        baseline=baseline_section(outcome, p_test, metric=spec.tuning.metric, seed=spec.seed),
        champion=champion,
    )
    return write_model_card(card, draw_plots(card, outcome.y_test, p_test, dependences), folder)


def run_project(
    spec: ProjectSpec,
    *,
    project_dir: Path,
    author: str = "unknown",
    principal: Principal | None = None,
    register: Callable[..., dict[str, Any]] | None = None,
    with_card: bool = True,
    on_trial: TrialCallback | None = None,
    on_stage: StageCallback | None = None,
    engine: Engine | None = None,
    data: PreparedData | None = None,
) -> RunResult:
    """Train, evaluate, register and (with ``with_card``) document one model version.

    ``principal`` is the authenticated developer registering the version (``author`` is then
    their name); without one the version is recorded under ``author``, unverified, and cannot
    be approved. ``register`` hands the registration to the governance service instead of this
    process (``register(version, thresholds=, measures=, model_sha256=)`` answers with the
    state and gates): then this process needs no audit key. ``data`` skips reading: it is the
    spec's data already prepared (:func:`prepare_data`).

    ``engine`` runs the feature stage and the tuning trials on a Dask cluster (see
    :mod:`keel.training.distributed`); by default both run in process.
    """
    check_cluster_tuning(spec, engine)  # before any data is read
    if principal is not None:
        principal.require("register")
        author = principal.name
    stage = on_stage or (lambda _: None)
    stage("reading data, checking its contract and computing features")
    data = data if data is not None else prepare_data(spec, engine=engine)
    stage("training")
    outcome = train_model(
        data.frame,
        spec,
        on_trial=on_trial,
        metadata={"data_sha256": data.table.sha256},
        engine=engine,
    )
    stage("evaluating")
    metrics, p_test = split_metrics(outcome)
    daily = _daily_metrics(spec, data, outcome, p_test)
    if spec.evaluation.precision_at_k is not None:
        top = spec.evaluation.precision_at_k
        metrics["test"][top.metric()] = float(
            np.mean([day[f"precision_at_{top.k}"] for day in daily])
        )
        if top.remove_detected:  # the handbook's rule above; each day scored alone beside it
            metrics["test"][f"{top.metric()}_days_alone"] = float(
                np.mean([day[f"precision_at_{top.k}_days_alone"] for day in daily])
            )
    curve = learning_curve(outcome, spec) if with_card else []
    fairness = fairness_on_test(data.frame, outcome, p_test, spec)
    thresholds = spec_thresholds(spec)
    measures = measures_of(
        metrics, fairness, baseline_auc=baseline_auc(outcome, spec), reviewed=spec.reviewed
    )
    intervals = intervals_section(outcome.y_test, p_test, seed=spec.seed)
    stage("registering")
    store = ProjectStore.of(spec, project_dir)
    registry = store.registry()
    spec_text = dump_spec(spec)
    code = code_version()
    environment = library_versions()
    run_id = registry.start_run(
        spec.registry.experiment or spec.project,
        f"{spec.project}-{outcome.family}",
        {
            "mlflow.user": author,
            "keel.author": author,
            "keel.data_sha256": data.table.sha256,
            "keel.code_version": code,
        },
    )
    version: VersionInfo | None = None
    try:
        registry.log(
            run_id,
            params=_flat_params(outcome, spec),
            metrics={
                **{
                    f"{part}_{name}": value
                    for part, values in metrics.items()
                    for name, value in values.items()
                },
                **_interval_metrics(intervals),
            },
        )
        registry.log_text(run_id, spec_text, "spec/keel.yaml")
        registry.log_text(
            run_id, json.dumps(data.contract.to_dict(), indent=2), "data/contract_report.json"
        )
        registry.log_text(
            run_id, json.dumps(data.cleaning.to_dict(), indent=2), "data/cleaning.json"
        )
        registry.log_text(run_id, json.dumps(environment, indent=2), "environment.json")
        registry.log_text(run_id, json.dumps(fairness, indent=2), "fairness.json")
        registry.log_text(
            run_id,
            json.dumps(outcome.tuning_summary(spec.tuning.metric), indent=2, default=str),
            "tuning/trials.json",
        )
        with tempfile.TemporaryDirectory(prefix="keel-run-") as tmp:
            model_sha = outcome.model.save(Path(tmp) / "model")
            registry.log_dir(run_id, Path(tmp) / "model", "model")
        version = registry.register(
            spec.model_name(),
            run_id,
            tags={
                "model_sha256": model_sha,
                "data_sha256": data.table.sha256,
                "spec_sha256": hashlib.sha256(spec_text.encode()).hexdigest(),
                "family": outcome.family,
                "test_auc": f"{metrics['test']['auc']:.6f}",
                "author": author,
                "code_version": code,
            },
            description=spec.description or "",
        )
        if register is None:  # this process writes the project's governance store
            governance = store.governance(create=True)
            gates = governance.record_registration(
                version,
                author=principal,
                claimed=author,
                thresholds=thresholds,
                measures=measures,
                model_sha256=model_sha,
            ).gates
            lifecycle = lifecycle_section(governance, version.name, version.version)
        else:  # the governance service records it
            answer = register(
                version, thresholds=thresholds, measures=measures, model_sha256=model_sha
            )
            gates = answer["gates"]
            lifecycle = {
                "state": answer["after"],
                "history": [],
                "as_of": None,
                "note": "registered through the governance service; `keel card` shows its history",
            }
        registry.set_version_tag(version.name, version.version, "gates", json.dumps(gates))
        card_html = card_json = None
        if with_card:
            stage("explaining and writing the model card")
            card_html, card_json = _write_card(
                spec,
                data,
                outcome,
                metrics,
                p_test,
                curve,
                fairness,
                gates,
                lifecycle,
                run={
                    "model_name": version.name,
                    "version": version.version,
                    "run_id": run_id,
                    "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "tracking_uri": registry.tracking_uri,
                    "code_version": code,
                    "author": author,
                },
                environment=environment,
                folder=card_dir(project_dir, version.name, version.version),
                daily=daily,
                intervals=intervals,
            )
            registry.log_dir(run_id, card_html.parent, "model_card")
            registry.set_version_tag(
                version.name, version.version, "card", str(card_html.resolve())
            )
        registry.finish_run(run_id)
    except BaseException:
        if version is not None:
            registry.delete_version(version.name, version.version)
        registry.finish_run(run_id, failed=True)
        raise
    return RunResult(
        model_name=version.name,
        version=version.version,
        run_id=run_id,
        family=outcome.family,
        metrics=metrics,
        gates=gates,
        model_sha256=model_sha,
        tracking_uri=registry.tracking_uri,
        project_dir=project_dir,
        card_html=card_html,
        card_json=card_json,
        author_verified=principal is not None or register is not None,
    )
