"""Behavioural tests (CheckList style).

What must not move a score, and which way some changes must push it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from keel.explain.contributions import Explainer
from keel.explain.reasons import top_reasons
from keel.models.artifact import KeelModel
from keel.spec import parse_spec
from keel.training.trainer import train_model

from factories import loans_spec, make_loans


@pytest.fixture(scope="module", params=["logistic", "lightgbm"])
def trained(request: pytest.FixtureRequest) -> tuple[KeelModel, pd.DataFrame]:
    frame = make_loans(rows=3000, seed=11)
    raw = loans_spec("unused.csv", tuning={"trials": 2}, models={"families": [request.param]})
    return train_model(frame, parse_spec(raw)).model, frame.sample(300, random_state=1).reset_index(
        drop=True
    )


def _scored(model: KeelModel, rows: pd.DataFrame) -> tuple[np.ndarray, list[list[str]]]:
    X = model.preprocessor.transform(rows)
    reasons = top_reasons(Explainer(model).explain_matrix(X), X, model)
    return model.predict_proba(rows), [[r.feature for r in row] for row in reasons]


def test_protected_attribute_and_id_do_not_move_scores_or_reasons(
    trained: tuple[KeelModel, pd.DataFrame],
) -> None:
    model, rows = trained
    flipped = rows.assign(
        gender=rows["gender"].map({"f": "m", "m": "f"}), loan_id=rows["loan_id"] + 10**6
    )

    scores, reasons = _scored(model, flipped)

    np.testing.assert_array_equal(scores, _scored(model, rows)[0])
    assert reasons == _scored(model, rows)[1]


def test_a_row_scores_the_same_alone_and_in_any_batch(
    trained: tuple[KeelModel, pd.DataFrame],
) -> None:
    model, rows = trained
    together = _scored(model, rows)
    shuffled = rows.sample(frac=1.0, random_state=2)
    reordered = _scored(model, shuffled)

    for position, index in enumerate(shuffled.index[:40]):
        alone = _scored(model, rows.iloc[[index]])
        assert alone[0][0] == together[0][index] == reordered[0][position]
        assert alone[1][0] == together[1][index] == reordered[1][position]


def test_more_late_payments_raise_risk_and_their_own_contribution(
    trained: tuple[KeelModel, pd.DataFrame],
) -> None:
    model, rows = trained
    explainer = Explainer(model)
    j = model.features.index("late_payments")
    low, high = rows.assign(late_payments=0), rows.assign(late_payments=4)

    lift = model.predict_proba(high) - model.predict_proba(low)
    pushed = explainer.explain(high).values[:, j] - explainer.explain(low).values[:, j]

    assert lift.mean() > 0.1
    assert (
        lift > 0
    ).mean() >= 0.95  # a free model may dip locally; the expectation holds for nearly every row
    assert (pushed > 0).mean() >= 0.95


def test_more_debt_at_the_same_income_raises_risk_on_average(
    trained: tuple[KeelModel, pd.DataFrame],
) -> None:
    model, rows = trained
    heavier = rows.assign(debt=(rows["debt"] + rows["income"] // 2))

    lift = model.predict_proba(heavier) - model.predict_proba(rows)

    assert lift.mean() > 0.02
    assert (lift >= 0).mean() >= 0.9
