"""Gates judged from measures: the review flag, the margin over the logistic baseline."""

from __future__ import annotations

from typing import Any

import pytest

from keel.evaluation.gates import gate_results, judge, measures_of, spec_thresholds, tighter
from keel.spec import parse_spec

METRICS = {
    "train": {"auc": 0.82, "ks": 0.5, "ece": 0.01},
    "validation": {"auc": 0.8, "ks": 0.45, "ece": 0.02},
    "test": {"auc": 0.8, "ks": 0.45, "ece": 0.02},
}


def _spec(**extra: Any) -> Any:
    return parse_spec(
        {
            "project": "p",
            "data": {"source": "x.csv"},
            "target": {"column": "y"},
            "contract": {"columns": {"y": {"dtype": "int"}, "x": {"dtype": "float"}}},
            **extra,
        }
    )


def test_an_unreviewed_spec_fails_the_spec_reviewed_gate() -> None:
    gates = gate_results(_spec(reviewed=False), METRICS)
    assert gates == [{"name": "spec_reviewed", "threshold": 1.0, "value": 0.0, "passed": False}]
    assert gate_results(_spec(reviewed=True), METRICS) == []  # reviewed: no gate to pass


def test_a_policy_may_require_a_reviewed_spec_of_every_version() -> None:
    policy = {"spec_reviewed": 1.0}
    reviewed = measures_of(METRICS, reviewed=True)
    unreviewed = measures_of(METRICS, reviewed=False)
    assert judge(tighter(policy, {}), reviewed)[0]["passed"] is True
    assert judge(tighter(policy, {}), unreviewed)[0]["passed"] is False
    assert judge(tighter(policy, {}), {"min_auc": 0.8})[0]["passed"] is None  # older version
    assert tighter({"spec_reviewed": 0.0}, {"spec_reviewed": 1.0}) == {"spec_reviewed": 1.0}


@pytest.mark.parametrize(
    ("baseline", "value", "passed"),
    [(0.78, 0.02, True), (0.8, 0.0, True), (0.81, -0.01, False), (None, None, None)],
)
def test_the_margin_over_the_logistic_baseline_is_a_gate(
    baseline: float | None, value: float | None, passed: bool | None
) -> None:
    spec = _spec(gates={"min_auc_over_baseline": 0.0})
    assert spec_thresholds(spec) == {"min_auc_over_baseline": 0.0}
    (gate,) = gate_results(spec, METRICS, baseline_auc=baseline)
    assert gate["name"] == "min_auc_over_baseline" and gate["passed"] is passed
    assert gate["value"] == (None if value is None else pytest.approx(value))
