"""Retraining: a challenger from the newest window, versus the champion on the same labelled rows.

``retrain`` moves the spec's time split so that its test window is the newest data known
at ``as_of`` (``data.until``: rows from ``as_of`` on are never read, and the logged spec says
so), scores the champion on that window, trains and registers a challenger with ``keel
run``'s flow (gates, audit, card), scores it on the same rows, which neither was trained
on, and applies the policy (:class:`keel.spec.RetrainingSpec`):

- *promoted*: better by ``min_improvement`` on the tuning metric, every gate passed, the
  spec asks for automatic promotion and the validators' governance policy allows it for this
  model: the policy approves and promotes (as ``policy:v<N>``, never the author);
- *awaiting approval*: better and every gate passed, but promotion needs a person: the
  version gets the ``challenger`` alias, so ``keel serve`` scores it in the shadow;
- *refused*: not better by the margin, or a gate failed.

Every decision is one audit row (action ``retrain``) with both scores and the reasons.
"""

from __future__ import annotations

import dataclasses
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from keel.errors import CardError, RegistryError, SpecError
from keel.evaluation.metrics import binary_metrics
from keel.features.cleaning import target_vector
from keel.features.offline import compute_features
from keel.features.windows import FeaturePlan
from keel.io.tables import read_table
from keel.io.times import as_of_time, naive_utc
from keel.lifecycle.card_refresh import refresh_card, versions_touched
from keel.lifecycle.run import RunResult, StageCallback, prepare_data, run_project
from keel.models.artifact import KeelModel
from keel.registry.governance import Governance
from keel.registry.principal import Principal
from keel.registry.project import ProjectStore
from keel.serving.loader import required_version
from keel.spec import ProjectSpec
from keel.training.split import split_rows

Decision = Literal["promoted", "awaiting approval", "refused"]
CHALLENGER = "challenger"


@dataclass(frozen=True)
class RetrainResult:
    """What a retraining run decided, and on which numbers."""

    decision: Decision
    reasons: list[str]
    champion_version: int
    challenger_version: int
    metric: str
    champion_score: float
    challenger_score: float
    window: dict[str, Any]
    run: RunResult

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (the run's paths as text)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "run"} | {
            "run": {
                "version": self.run.version,
                "metrics": self.run.metrics,
                "gates": self.run.gates,
            }
        }


def newest_window(spec: ProjectSpec, as_of: pd.Timestamp) -> ProjectSpec:
    """The spec reading only the data before ``as_of`` (``data.until``).

    Its test window is the newest days.
    """
    split = spec.split
    data = spec.data.model_copy(update={"until": as_of.to_pydatetime()})
    if split.method == "delayed":
        days = split.train_days + split.delay_days + split.test_days
        start = (as_of.normalize() - pd.Timedelta(days=days)).date()
        split = split.model_copy(update={"train_start": start})
    else:  # "time": the spec's fractions of the data before as_of
        split = split.model_copy(update={"validation_start": None, "test_start": None})
    return spec.model_copy(update={"data": data, "split": split})


def retrain(
    spec: ProjectSpec,
    *,
    project_dir: Path,
    author: str,
    as_of: pd.Timestamp | None = None,
    with_card: bool = True,
    on_stage: StageCallback | None = None,
    principal: Principal | None = None,
) -> RetrainResult:
    """Train a challenger on the newest window, compare it with the champion, and apply the policy.

    Needs a time split (``split.method`` time or delayed): only then is the newest window one
    the champion was not trained on. ``as_of`` defaults to the day after the newest row.
    """
    if spec.split.method not in ("time", "delayed"):
        raise SpecError(
            f"split.method: keel retrain needs a time split ('time' or 'delayed'), not "
            f"'{spec.split.method}': a random test split may hold rows the champion was trained on"
        )
    stage = on_stage or (lambda _: None)
    governance = ProjectStore.of(spec, project_dir).governance()
    registry = governance.registry
    name = spec.model_name()
    required_version(governance, name)  # no champion: the one error every command gives
    champion = governance.champion(name)
    if champion is None:  # another process retired it since the line above
        raise RegistryError(f"model '{name}' has no champion any more; run keel retrain again")
    time_column = spec.data.time_column or ""
    if as_of is None:
        newest = naive_utc(
            read_table(spec.data.source, spec.data.file_format()).frame[time_column]
        ).max()
        as_of = newest.normalize() + pd.Timedelta(days=1)
    moved = newest_window(spec, as_of_time(as_of))
    stage("reading the data known at the as-of time, checking its contract and computing features")
    data = prepare_data(moved)
    frame = data.frame
    y = target_vector(frame, moved).to_numpy()
    split = split_rows(
        y,
        moved.split,
        seed=moved.seed,
        time=frame[time_column],
        entity=frame[moved.split.known_entity] if moved.split.known_entity else None,
    )
    rows = frame.iloc[split.test]
    metric = "auc" if spec.tuning.metric == "log_loss" else spec.tuning.metric

    def score(version: int) -> float:
        model, _ = registry.load_model(name, version)
        own = _own_features(model, frame, FeaturePlan.of(moved), split.test)
        return binary_metrics(y[split.test], model.predict_proba(own))[metric]

    stage("scoring the champion on the newest labelled window")
    scores = {champion.version: score(champion.version)}  # before anything is registered
    run = run_project(
        moved,
        project_dir=project_dir,
        author=author,
        principal=principal,
        with_card=with_card,
        on_stage=on_stage,
        data=data,
    )
    author = principal.actor if principal else f"unverified:{author}"
    scores[run.version] = score(run.version)
    times = pd.to_datetime(rows[time_column])
    window = {
        "rows": len(rows),
        "positives": int(y[split.test].sum()),
        "from": str(times.min()),
        "to": str(times.max()),
        "as_of": str(as_of_time(as_of)),
    }
    decision, reasons = _decide(
        spec,
        run,
        scores[champion.version],
        scores[run.version],
        metric,
        allowed=name in governance.policy().auto_promote,
    )
    before = {"champion": champion.version, metric: scores[champion.version]}
    after: dict[str, Any] = {
        "challenger": run.version,
        metric: scores[run.version],
        "decision": decision,
        "window": window,
        "champion": champion.version,
    }
    try:
        _apply(governance, spec, name, run.version, decision, reasons, principal)
    except BaseException as error:  # the audit says what was decided and that applying it failed
        after["decision"] = f"{decision}, then failed: {error}"
        governance.audit.append(
            actor=author,
            action="retrain",
            obj=f"{name}/v{run.version}",
            before=before,
            after=after,
            reason=str(error),
        )
        raise
    after["champion"] = run.version if decision == "promoted" else champion.version
    row = governance.audit.append(
        actor=author,
        action="retrain",
        obj=f"{name}/v{run.version}",
        before=before,
        after=after,
        reason="; ".join(reasons),
    )
    for version in versions_touched(row):  # the challenger and the champion it was judged against
        # The cards show the new lifecycle state and this decision; CardError: a version
        # trained without a card (keel train, --no-card).
        with suppress(CardError):
            refresh_card(project_dir, name, version, governance=governance)
    return RetrainResult(
        decision,
        reasons,
        champion.version,
        run.version,
        metric,
        scores[champion.version],
        scores[run.version],
        window,
        run,
    )


def _own_features(
    model: KeelModel, frame: pd.DataFrame, computed: FeaturePlan, rows: np.ndarray
) -> pd.DataFrame:
    """``rows`` of ``frame`` with the window and calendar features ``model`` reads.

    ``frame`` holds the features of ``computed``.
    """
    plan = FeaturePlan.of_model(model.metadata.get("features"))
    if plan == computed:
        return frame.iloc[rows]
    raw = frame.drop(columns=computed.names()).reset_index(drop=True)
    return (
        pd.concat([raw, pd.DataFrame(compute_features(raw, plan))], axis=1).iloc[rows]
        if plan.names()
        else raw.iloc[rows]
    )


def _decide(
    spec: ProjectSpec,
    run: RunResult,
    champion: float,
    challenger: float,
    metric: str,
    *,
    allowed: bool,
) -> tuple[Decision, list[str]]:
    policy = spec.retraining
    margin = challenger - champion
    reasons = [
        f"{metric}: challenger {challenger:.4f}, champion {champion:.4f} "
        f"({margin:+.4f}; the policy asks at least +{policy.min_improvement:.4f})"
    ]
    failed = [g["name"] for g in run.gates if g.get("passed") is not True]
    if failed:
        reasons.append(f"gates failed or not evaluated: {', '.join(failed)}")
    if margin < policy.min_improvement or margin <= 0 or failed:
        return "refused", reasons
    if not policy.auto_promote:
        reasons.append("the policy needs a person's approval (retraining.auto_promote is off)")
        return "awaiting approval", reasons
    if not allowed:
        reasons.append(
            f"the governance policy does not allow automatic promotion of '{spec.model_name()}' "
            "(a validator allows it: keel policy set --auto-promote NAME)"
        )
        return "awaiting approval", reasons
    return "promoted", reasons + [
        f"promoted by the governance policy (retraining signed off by {policy.approved_by})"
    ]


def _apply(
    governance: Governance,
    spec: ProjectSpec,
    name: str,
    version: int,
    decision: Decision,
    reasons: list[str],
    principal: Principal | None,
) -> None:
    """Record the decision.

    A better challenger shadows the champion only when a signed-in developer trained it.
    """
    governance.registry.set_version_tag(name, version, "retrain_decision", decision)
    if decision == "promoted":
        governance.auto_promote(name, version, note="retraining policy: " + "; ".join(reasons))
    elif decision == "awaiting approval" and principal is not None:
        governance.set_challenger(name, version, by=principal, reason="; ".join(reasons))
