"""Validation gates from the spec, evaluated on a version's metrics (pure)."""

from __future__ import annotations

from typing import Any

from keel.spec import ProjectSpec


def gate_results(
    spec: ProjectSpec, metrics: dict[str, dict[str, float]], fairness: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Each configured gate with its threshold, measured value and outcome; None means not evaluated."""
    test, train = metrics["test"], metrics["train"]
    measured = {
        "min_auc": (test["auc"], lambda v, t: v >= t),
        "min_ks": (test["ks"], lambda v, t: v >= t),
        "max_ece": (test["ece"], lambda v, t: v <= t),
        "max_train_test_gap": (train["auc"] - test["auc"], lambda v, t: v <= t),
        "max_psi": (None, None),
    }
    rows = []
    for name, threshold in spec.gates.model_dump().items():
        if threshold is None:
            continue
        value, rule = measured[name]
        rows.append({
            "name": name,
            "threshold": threshold,
            "value": value,
            "passed": None if value is None or rule is None else bool(rule(value, threshold)),
        })
    bounds = (("min_adverse_impact_ratio", "adverse_impact_ratio", lambda v, t: v >= t),
              ("max_equal_opportunity_difference", "equal_opportunity_difference", lambda v, t: v <= t))
    for attribute in fairness or []:
        for key, measure, rule in bounds:
            threshold = getattr(spec.fairness, key)
            if threshold is None:
                continue
            value = attribute[measure]
            rows.append({
                "name": f"{key}[{attribute['attribute']}]",
                "threshold": threshold,
                "value": value,
                "passed": None if value is None else bool(rule(value, threshold)),
            })
    return rows
