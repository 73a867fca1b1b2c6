"""Monotone constraints from the spec hold on a grid: more late payments never lower risk."""

from __future__ import annotations

import numpy as np

from keel.spec import parse_spec
from keel.training.trainer import train_model

from factories import loans_spec, make_loans


def _grid_steps(monotone: dict[str, int]) -> np.ndarray:
    """Score changes as late_payments goes 0..10 for 200 fixed clients (one row per step)."""
    frame = make_loans(rows=3000, seed=5)
    raw = loans_spec(
        "unused.csv",
        tuning={"trials": 2, "folds": 1},  # about constraints, not folds: one split is enough
        models={"families": ["lightgbm"], "lightgbm": {"monotone": monotone}},
    )
    model = train_model(frame, parse_spec(raw)).model
    rows = frame.sample(200, random_state=0).reset_index(drop=True)
    scores = []
    for late in range(0, 11):
        grid = rows.copy()
        grid["late_payments"] = late
        scores.append(model.predict_proba(grid))
    return np.diff(np.vstack(scores), axis=0)


def test_more_late_payments_never_lower_risk_under_an_increasing_constraint() -> None:
    steps = _grid_steps({"late_payments": 1})
    assert (steps >= 0).all()
    assert (steps > 0).any()


def test_a_constraint_against_the_data_is_obeyed_where_the_free_model_disagrees() -> None:
    free = _grid_steps({})
    forced = _grid_steps({"late_payments": -1})
    assert (free > 0).any()
    assert (forced <= 0).all()
