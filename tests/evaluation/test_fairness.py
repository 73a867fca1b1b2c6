"""Fairness by group against a naive count, and fairness bounds acting as gates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from keel.evaluation.fairness import fairness_report, group_labels
from keel.evaluation.gates import gate_results
from keel.spec import FairnessSpec, parse_spec


def _data(seed: int = 0, rows: int = 3000) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    protected = pd.DataFrame({"SEX": rng.choice([1, 2], rows), "AGE": rng.integers(18, 80, rows)})
    y = rng.binomial(1, 0.3, rows)
    score = np.clip(0.3 + 0.3 * y + 0.1 * (protected["SEX"] == 2) + rng.normal(0, 0.2, rows), 0, 1)
    return protected, y, score


def test_group_rates_match_a_naive_count() -> None:
    protected, y, score = _data()
    spec = FairnessSpec(
        bands={"AGE": [30, 50]}, labels={"SEX": {1: "male", 2: "female"}}, min_group_size=1
    )
    report = fairness_report(protected, y, score, threshold=0.5, fairness=spec)

    sex = report[0]
    assert sex["attribute"] == "SEX" and [g["group"] for g in sex["groups"]] == ["female", "male"]
    for group in sex["groups"]:
        mask = (protected["SEX"] == (2 if group["group"] == "female" else 1)).to_numpy()
        decided = score[mask] >= 0.5
        assert group["n"] == mask.sum()
        assert group["adverse_rate"] == pytest.approx(decided.mean())
        assert group["tpr"] == pytest.approx(decided[y[mask] == 1].mean())
        assert group["fpr"] == pytest.approx(decided[y[mask] == 0].mean())
    approvals = [g["approval_rate"] for g in sex["groups"]]
    assert sex["adverse_impact_ratio"] == pytest.approx(min(approvals) / max(approvals))
    assert [g["group"] for g in report[1]["groups"]] == ["< 30", "30 to < 50", ">= 50"]
    assert sum(g["n"] for g in report[1]["groups"]) == len(y)


def test_small_groups_are_shown_but_do_not_decide_the_ratios() -> None:
    protected, y, score = _data()
    protected.loc[:9, "SEX"] = 3
    report = fairness_report(
        protected[["SEX"]], y, score, threshold=0.5, fairness=FairnessSpec(min_group_size=50)
    )
    groups = {g["group"]: g for g in report[0]["groups"]}
    assert groups["3"]["n"] == 10
    big = [groups["1"]["approval_rate"], groups["2"]["approval_rate"]]
    assert report[0]["adverse_impact_ratio"] == pytest.approx(min(big) / max(big))


def test_band_edges_are_left_closed() -> None:
    labels = group_labels(pd.Series([24, 25, 59, 60]), "AGE", FairnessSpec(bands={"AGE": [25, 60]}))
    assert list(labels) == ["< 25", "25 to < 60", "25 to < 60", ">= 60"]


def test_fairness_bounds_become_gates_that_fail_when_crossed() -> None:
    spec = parse_spec(
        {
            "project": "p",
            "data": {"source": "x.csv"},
            "target": {"column": "y"},
            "protected": ["SEX"],
            "contract": {
                "columns": {"y": {"dtype": "int"}, "SEX": {"dtype": "int"}, "x": {"dtype": "float"}}
            },
            "fairness": {"min_adverse_impact_ratio": 0.8, "max_equal_opportunity_difference": 0.1},
        }
    )
    metrics = {p: {"auc": 0.8, "ks": 0.4, "ece": 0.01} for p in ("train", "validation", "test")}
    fairness = [
        {"attribute": "SEX", "adverse_impact_ratio": 0.75, "equal_opportunity_difference": 0.05}
    ]
    gates = {g["name"]: g["passed"] for g in gate_results(spec, metrics, fairness)}
    assert gates == {
        "min_adverse_impact_ratio[SEX]": False,
        "max_equal_opportunity_difference[SEX]": True,
    }


def test_fairness_settings_must_name_protected_attributes() -> None:
    from keel.errors import SpecError

    with pytest.raises(SpecError, match=r"fairness.bands.AGE: 'AGE' is not a protected attribute"):
        parse_spec(
            {
                "project": "p",
                "data": {"source": "x.csv"},
                "target": {"column": "y"},
                "protected": ["SEX"],
                "contract": {
                    "columns": {
                        "y": {"dtype": "int"},
                        "SEX": {"dtype": "int"},
                        "AGE": {"dtype": "int"},
                    }
                },
                "fairness": {"bands": {"AGE": [30]}},
            }
        )
