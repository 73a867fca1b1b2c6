"""Validation gates: thresholds judged on measures (pure).

Thresholds come from the spec, tightened by the governance policy.

A version's *measures* are the numbers its gates read, recorded at registration: test AUC,
KS and ECE, the train–test AUC gap, the test AUC over the logistic baseline's, whether the
spec was reviewed (1 or 0), and each protected attribute's fairness ratios. Gates are judged
from those measures alone, so a service can judge a version again under a newer policy
without the data. A gate whose measure is missing is not evaluated (``passed`` None), and
only a gate that passed counts as passing: a missing measure never lets a version through.

``spec_reviewed`` is how a starter spec waits for a person: a spec with ``reviewed: false``
sets its threshold to 1 while its measure is 0, so the version fails it; a policy may set it
to require a reviewed spec of every version.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from keel.spec import ProjectSpec

MODEL_GATES: dict[str, Callable[[float, float], bool]] = {
    "min_auc": lambda v, t: v >= t,
    "min_ks": lambda v, t: v >= t,
    "max_ece": lambda v, t: v <= t,
    "max_train_test_gap": lambda v, t: v <= t,
    "max_psi": lambda v, t: v <= t,
    "min_auc_over_baseline": lambda v, t: v >= t,
    "spec_reviewed": lambda v, t: v >= t,
}
_AT_LEAST = {"spec_reviewed"}  # besides every min_* gate: a larger threshold is stricter
FAIRNESS_GATES: dict[str, tuple[str, Callable[[float, float], bool]]] = {
    "min_adverse_impact_ratio": ("adverse_impact_ratio", lambda v, t: v >= t),
    "max_equal_opportunity_difference": ("equal_opportunity_difference", lambda v, t: v <= t),
}


def measures_of(
    metrics: dict[str, dict[str, float]],
    fairness: list[dict[str, Any]] | None = None,
    *,
    baseline_auc: float | None = None,
    reviewed: bool = True,
) -> dict[str, Any]:
    """The numbers gates read, from a run's metrics and fairness report (plain JSON).

    ``baseline_auc`` is the logistic baseline's test AUC on the same rows (None: unknown, so
    ``min_auc_over_baseline`` cannot pass); ``reviewed`` is the spec's flag.
    """
    test, train = metrics["test"], metrics["train"]
    return {
        "min_auc": test["auc"],
        "min_ks": test["ks"],
        "max_ece": test["ece"],
        "max_train_test_gap": train["auc"] - test["auc"],
        "max_psi": None,
        "min_auc_over_baseline": None if baseline_auc is None else test["auc"] - baseline_auc,
        "spec_reviewed": 1.0 if reviewed else 0.0,
        "fairness": [
            {"attribute": a["attribute"], **{m: a.get(m) for m, _ in FAIRNESS_GATES.values()}}
            for a in fairness or []
        ],
    }


def spec_thresholds(spec: ProjectSpec) -> dict[str, float]:
    """The gate thresholds a spec sets (model gates and fairness bounds), unset ones left out.

    An unreviewed spec (``reviewed: false``) adds ``spec_reviewed: 1``.
    """
    fairness = {key: getattr(spec.fairness, key) for key in FAIRNESS_GATES}
    review = {} if spec.reviewed else {"spec_reviewed": 1.0}
    return {k: v for k, v in (spec.gates.model_dump() | fairness | review).items() if v is not None}


def tighter(policy: Mapping[str, float], spec: Mapping[str, float]) -> dict[str, float]:
    """Each gate at the stricter of the two thresholds.

    A spec may tighten the policy, never loosen it.
    """
    merged = dict(policy)
    for name, threshold in spec.items():
        if name not in merged:
            merged[name] = threshold
        elif name.startswith("min_") or name in _AT_LEAST:
            merged[name] = max(merged[name], threshold)
        else:
            merged[name] = min(merged[name], threshold)
    return merged


def judge(thresholds: Mapping[str, float], measures: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each gate with its threshold, measured value and outcome.

    ``passed`` None means not evaluated.
    """
    rows = []
    for name, rule in MODEL_GATES.items():
        if name in thresholds:
            value = measures.get(name)
            rows.append(_row(name, thresholds[name], value, rule))
    for key, (measure, rule) in FAIRNESS_GATES.items():
        if key in thresholds:
            attributes = measures.get("fairness", [])
            if (
                not attributes
            ):  # a fairness floor with nothing to judge it on blocks: no protected attribute
                rows.append(_row(f"{key}[no protected attribute]", thresholds[key], None, rule))
            for attribute in attributes:
                rows.append(
                    _row(
                        f"{key}[{attribute['attribute']}]",
                        thresholds[key],
                        attribute.get(measure),
                        rule,
                    )
                )
    return rows


def _row(
    name: str, threshold: float, value: float | None, rule: Callable[[float, float], bool]
) -> dict[str, Any]:
    return {
        "name": name,
        "threshold": threshold,
        "value": value,
        "passed": None if value is None else bool(rule(value, threshold)),
    }


def gate_results(
    spec: ProjectSpec,
    metrics: dict[str, dict[str, float]],
    fairness: list[dict[str, Any]] | None = None,
    *,
    baseline_auc: float | None = None,
) -> list[dict[str, Any]]:
    """The spec's gates judged on a run's metrics, fairness report and baseline AUC."""
    measures = measures_of(metrics, fairness, baseline_auc=baseline_auc, reviewed=spec.reviewed)
    return judge(spec_thresholds(spec), measures)
