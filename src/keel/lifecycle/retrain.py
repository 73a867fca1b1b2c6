"""Retraining: a challenger from the newest data window, judged against the champion on the same labelled rows.

``retrain`` moves the spec's split so that its test window is the newest data known at
``as_of`` (rows from ``as_of`` on are dropped: nothing later is read), trains and registers a
challenger with ``keel run``'s flow (gates, audit, card), then scores the champion and the
challenger on the challenger's test rows, which neither was trained on, and applies the
policy (:class:`keel.spec.RetrainingSpec`):

- *promoted*: better by ``min_improvement`` on the tuning metric, every gate passed, and the
  policy allows automatic promotion: the policy approves (as ``policy:<approved_by>``, never
  the author) and promotes, through the same governance rules as a person;
- *awaiting approval*: better and every gate passed, but promotion needs a person: the
  version gets the ``challenger`` alias, so ``keel serve`` scores it in the shadow;
- *refused*: not better by the margin, or a gate failed.

Every decision is one audit row (action ``retrain``) with both scores and the reasons.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from keel.errors import CardError, RegistryError
from keel.evaluation.metrics import binary_metrics
from keel.features.cleaning import target_vector
from keel.features.offline import compute_features
from keel.features.windows import FeaturePlan
from keel.lifecycle.card_refresh import refresh_card, versions_touched
from keel.lifecycle.run import RunResult, StageCallback, prepare_data, run_project
from keel.models.artifact import KeelModel
from keel.registry.audit import AuditLog, make_engine
from keel.registry.governance import Governance, default_governance_uri
from keel.registry.store import Registry
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
            "run": {"version": self.run.version, "metrics": self.run.metrics, "gates": self.run.gates}}


def newest_window(spec: ProjectSpec, as_of: pd.Timestamp) -> ProjectSpec:
    """The spec with its split moved so that the test window ends at ``as_of`` (time splits only)."""
    split = spec.split
    if split.method == "delayed":
        days = split.train_days + split.delay_days + split.test_days
        start = (pd.Timestamp(as_of).normalize() - pd.Timedelta(days=days)).date()
        return spec.model_copy(update={"split": split.model_copy(update={"train_start": start})})
    if split.method == "time":  # the spec's fractions, over the data known at as_of
        return spec.model_copy(update={"split": split.model_copy(update={"validation_start": None,
                                                                         "test_start": None})})
    return spec


def retrain(spec: ProjectSpec, *, project_dir: Path, author: str, as_of: pd.Timestamp | None = None,
            with_card: bool = True, on_stage: StageCallback | None = None) -> RetrainResult:
    """Train a challenger on the newest window, compare it with the champion, and apply the policy."""
    stage = on_stage or (lambda _: None)
    registry = Registry.for_project(project_dir, spec.registry.tracking_uri)
    governance = Governance(registry, AuditLog(make_engine(spec.registry.governance_uri
                                                           or default_governance_uri(project_dir))))
    name = spec.model_name()
    champion = governance.champion(name)
    if champion is None:
        raise RegistryError(f"model '{name}' has no champion to challenge; keel run, approve and promote one first")
    stage("reading data, checking its contract and computing features")
    data = prepare_data(spec)
    time_column = spec.data.time_column
    if time_column:
        times = pd.to_datetime(data.frame[time_column])
        as_of = pd.Timestamp(as_of) if as_of is not None else times.max().normalize() + pd.Timedelta(days=1)
        data = dataclasses.replace(data, frame=data.frame[times < as_of].reset_index(drop=True))
    moved = newest_window(spec, as_of) if as_of is not None else spec
    run = run_project(moved, project_dir=project_dir, author=author, with_card=with_card, on_stage=on_stage, data=data)

    stage("scoring champion and challenger on the newest labelled window")
    frame = data.frame
    y = target_vector(frame, moved).to_numpy()
    split = split_rows(y, moved.split, seed=moved.seed,
                       time=frame[time_column] if time_column else None,
                       entity=frame[moved.split.known_entity] if moved.split.known_entity else None)
    rows = frame.iloc[split.test]
    metric = "auc" if spec.tuning.metric == "log_loss" else spec.tuning.metric
    scores = {}
    for version in (champion.version, run.version):
        model, _ = registry.load_model(name, version)
        own = _own_features(model, frame, FeaturePlan.of(moved), split.test)
        scores[version] = binary_metrics(y[split.test], model.predict_proba(own))[metric]
    window = {"rows": len(rows), "positives": int(y[split.test].sum()),
              **({"from": str(pd.to_datetime(rows[time_column]).min()), "to": str(pd.to_datetime(rows[time_column]).max())}
                 if time_column else {})}
    decision, reasons = _decide(spec, run, scores[champion.version], scores[run.version], metric)
    _apply(governance, spec, name, run.version, decision, reasons)
    row = governance.audit.append(
        actor=author, action="retrain", obj=f"{name}/v{run.version}",
        before={"champion": champion.version, metric: scores[champion.version]},
        after={"challenger": run.version, metric: scores[run.version], "decision": decision, "window": window,
               "champion": run.version if decision == "promoted" else champion.version},
        reason="; ".join(reasons))
    for version in versions_touched(row):  # the challenger and the champion it was judged against
        try:  # the cards show the new lifecycle state and this decision
            refresh_card(project_dir, name, version, governance=governance)
        except CardError:  # a version trained without a card (keel train, --no-card)
            pass
    return RetrainResult(decision, reasons, champion.version, run.version, metric, scores[champion.version],
                         scores[run.version], window, run)


def _own_features(model: KeelModel, frame: pd.DataFrame, computed: FeaturePlan, rows: np.ndarray) -> pd.DataFrame:
    """``rows`` of ``frame`` (which holds ``computed``) with the window and calendar features ``model`` reads."""
    plan = FeaturePlan.of_model(model.metadata.get("features"))
    if plan == computed:
        return frame.iloc[rows]
    raw = frame.drop(columns=computed.names()).reset_index(drop=True)
    return pd.concat([raw, pd.DataFrame(compute_features(raw, plan))], axis=1).iloc[rows] if plan.names() \
        else raw.iloc[rows]


def _decide(spec: ProjectSpec, run: RunResult, champion: float, challenger: float, metric: str
            ) -> tuple[Decision, list[str]]:
    policy = spec.retraining
    margin = challenger - champion
    reasons = [f"{metric}: challenger {challenger:.4f}, champion {champion:.4f} "
               f"({margin:+.4f}; the policy asks at least +{policy.min_improvement:.4f})"]
    failed = [g["name"] for g in run.gates if g.get("passed") is not True]
    if failed:
        reasons.append(f"gates failed or not evaluated: {', '.join(failed)}")
    if margin < policy.min_improvement or margin <= 0 or failed:
        return "refused", reasons
    if not policy.auto_promote:
        reasons.append("the policy needs a person's approval (retraining.auto_promote is off)")
        return "awaiting approval", reasons
    return "promoted", reasons + [f"promoted by the policy signed off by {policy.approved_by}"]


def _apply(governance: Governance, spec: ProjectSpec, name: str, version: int, decision: Decision,
           reasons: list[str]) -> None:
    registry = governance.registry
    registry.set_version_tag(name, version, "retrain_decision", decision)
    if decision == "promoted":
        policy = f"policy:{spec.retraining.approved_by}"
        note = "retraining policy: " + "; ".join(reasons)
        governance.approve(name, version, by=policy, role="validator", note=note)
        governance.promote(name, version, by=policy, role="deployer", note=note)
    elif decision == "awaiting approval":
        registry.set_alias(name, CHALLENGER, version)
