"""``keel check``: a quick pipeline check for CI, that registers nothing and writes no state.

It validates the spec, reads the data and enforces its contract on every row, trains on a
sample with the tuning trials cut down, and judges the gates the way registration would:
the spec's thresholds, tightened by the governance policy in force when the project's
governance store exists (read only; without one, the spec's alone). The sample is stratified
by the target for a stratified split; for a time or delayed split it is a uniform sample of
rows kept in time order, so every period the split cuts stays in it.

The numbers come from a sample and a short search, so they estimate what ``keel run`` will
measure; the check is meant to catch a broken spec, broken data or a model far from its
gates before a full run, not to replace the run's gates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from keel.evaluation.gates import judge, measures_of, spec_thresholds, tighter
from keel.features.cleaning import target_vector
from keel.lifecycle.run import (
    StageCallback,
    baseline_auc,
    fairness_on_test,
    prepare_data,
    split_metrics,
)
from keel.registry.audit import AuditRow, audit_table, open_database
from keel.registry.governance import default_governance_uri, store_exists
from keel.registry.states import Policy, replay
from keel.spec import ProjectSpec
from keel.training.trainer import train_model

DEFAULT_SAMPLE_ROWS = 20_000
DEFAULT_TRIALS = 3


@dataclass(frozen=True)
class CheckResult:
    """What a check measured on its sample and how the gates judged it."""

    rows: int  # rows that passed the contract and cleaning
    sampled: int  # rows the model was trained and tested on
    trials: int  # tuning trials per family
    family: str
    metrics: dict[str, dict[str, float]]
    gates: list[dict[str, Any]]
    policy_version: int | None  # None: no governance store, the spec's gates alone
    contract: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when every gate passed (a gate not evaluated does not pass)."""
        return all(gate["passed"] is True for gate in self.gates)

    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON (for a CI artifact)."""
        return {
            "passed": self.passed,
            "rows": self.rows,
            "sampled": self.sampled,
            "trials": self.trials,
            "family": self.family,
            "metrics": self.metrics,
            "gates": self.gates,
            "policy_version": self.policy_version,
            "contract": self.contract,
        }


def sample_rows(frame: pd.DataFrame, spec: ProjectSpec, rows: int) -> pd.DataFrame:
    """At most ``rows`` rows of ``frame``, drawn as the spec's split needs (seeded by the spec).

    Stratified by the target for a stratified split; otherwise a uniform draw kept in order.
    """
    if len(frame) <= rows:
        return frame
    rng = np.random.default_rng(spec.seed)
    if spec.split.method == "stratified":
        y = target_vector(frame, spec).to_numpy()
        picked = []
        for label in np.unique(y):
            members = np.flatnonzero(y == label)
            share = max(2, round(len(members) * rows / len(frame)))
            picked.append(rng.choice(members, size=min(share, len(members)), replace=False))
        positions = np.sort(np.concatenate(picked))
    else:
        positions = np.sort(rng.choice(len(frame), size=rows, replace=False))
    return frame.iloc[positions].reset_index(drop=True)


def governance_policy(spec: ProjectSpec, project_dir: Path) -> Policy | None:
    """The policy in force in the project's governance store, read only; None when none exists."""
    url = spec.registry.governance_uri or default_governance_uri(project_dir)
    if not store_exists(url):
        return None
    engine = open_database(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(audit_table).order_by(audit_table.c.seq))
            return replay(AuditRow(**row._mapping) for row in rows).policy
    finally:
        engine.dispose()


def check_project(
    spec: ProjectSpec,
    *,
    project_dir: Path,
    sample: int = DEFAULT_SAMPLE_ROWS,
    trials: int = DEFAULT_TRIALS,
    on_stage: StageCallback | None = None,
) -> CheckResult:
    """Contract on all rows, training on a sample with at most ``trials`` trials, gates judged.

    Raises the errors ``keel run`` would (SpecError, DataError, ContractError, TrainingError);
    nothing is registered and no store is written.
    """
    stage = on_stage or (lambda _: None)
    stage("reading data, checking its contract and computing features")
    data = prepare_data(spec)
    drawn = sample_rows(data.frame, spec, sample)
    quick = spec.model_copy(
        update={
            "tuning": spec.tuning.model_copy(update={"trials": min(spec.tuning.trials, trials)})
        }
    )
    stage(f"training on {len(drawn)} of {len(data.frame)} rows, {quick.tuning.trials} trial(s)")
    outcome = train_model(drawn, quick)
    stage("judging the gates")
    metrics, p_test = split_metrics(outcome)
    fairness = fairness_on_test(drawn, outcome, p_test, spec)
    measures = measures_of(
        metrics, fairness, baseline_auc=baseline_auc(outcome, quick), reviewed=spec.reviewed
    )
    policy = governance_policy(spec, project_dir)
    thresholds = tighter(policy.thresholds if policy else {}, spec_thresholds(spec))
    return CheckResult(
        rows=len(data.frame),
        sampled=len(drawn),
        trials=quick.tuning.trials,
        family=outcome.family,
        metrics=metrics,
        gates=judge(thresholds, measures),
        policy_version=policy.version if policy else None,
        contract=data.contract.to_dict(),
    )
