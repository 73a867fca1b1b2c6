"""Validation gates: thresholds judged on measures (pure).

Thresholds come from the spec, tightened by the governance policy.

A version's *measures* are the numbers its gates read, recorded at registration: test AUC,
KS and ECE, the train–test AUC gap, and each protected attribute's fairness ratios. Gates
are judged from those measures alone, so a service can judge a version again under a newer
policy without the data.
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
}
FAIRNESS_GATES: dict[str, tuple[str, Callable[[float, float], bool]]] = {
    "min_adverse_impact_ratio": ("adverse_impact_ratio", lambda v, t: v >= t),
    "max_equal_opportunity_difference": ("equal_opportunity_difference", lambda v, t: v <= t),
}


def measures_of(
    metrics: dict[str, dict[str, float]], fairness: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The numbers gates read, from a run's metrics and fairness report (plain JSON)."""
    test, train = metrics["test"], metrics["train"]
    return {
        "min_auc": test["auc"],
        "min_ks": test["ks"],
        "max_ece": test["ece"],
        "max_train_test_gap": train["auc"] - test["auc"],
        "max_psi": None,
        "fairness": [
            {"attribute": a["attribute"], **{m: a.get(m) for m, _ in FAIRNESS_GATES.values()}}
            for a in fairness or []
        ],
    }


def spec_thresholds(spec: ProjectSpec) -> dict[str, float]:
    """The gate thresholds a spec sets (model gates and fairness bounds), unset ones left out."""
    fairness = {key: getattr(spec.fairness, key) for key in FAIRNESS_GATES}
    return {k: v for k, v in (spec.gates.model_dump() | fairness).items() if v is not None}


def tighter(policy: Mapping[str, float], spec: Mapping[str, float]) -> dict[str, float]:
    """Each gate at the stricter of the two thresholds.

    A spec may tighten the policy, never loosen it.
    """
    merged = dict(policy)
    for name, threshold in spec.items():
        if name not in merged:
            merged[name] = threshold
        elif name.startswith("min_"):
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
) -> list[dict[str, Any]]:
    """The spec's gates judged on a run's metrics and fairness report."""
    return judge(spec_thresholds(spec), measures_of(metrics, fairness))
