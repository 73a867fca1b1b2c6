"""Contributions add up to the margin for both families.

Reasons are the adverse top-k with the spec's words.
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

TEXTS = {
    "late_payments": "Late payments on record",
    "debt_to_income": "High debt relative to income",
}


def _model(family: str, **overrides: object) -> tuple[KeelModel, pd.DataFrame]:
    frame = make_loans(rows=1500, seed=3)
    raw = loans_spec(
        "unused.csv",
        tuning={"trials": 2},
        models={"families": [family]},
        reasons={"texts": TEXTS, "top_k": 2},
        **overrides,
    )
    return train_model(frame, parse_spec(raw)).model, frame


@pytest.fixture(scope="module", params=["logistic", "lightgbm"])
def trained(request: pytest.FixtureRequest) -> tuple[KeelModel, pd.DataFrame]:
    return _model(request.param)


def test_contributions_plus_base_equal_the_margin(trained: tuple[KeelModel, pd.DataFrame]) -> None:
    model, frame = trained
    X = model.preprocessor.transform(frame)

    explained = Explainer(model).explain(frame)

    assert explained.features == model.features
    assert np.abs(explained.margin() - model.scorer.margin(X)).max() < 1e-9


def test_logistic_contribution_is_coefficient_times_value_minus_training_mean() -> None:
    model, frame = _model("logistic")
    scorer = model.scorer
    X = model.preprocessor.transform(frame.head(50))

    explained = Explainer(model).explain_matrix(X)

    column = 0  # design columns follow features; categorical 'region' spans its categories
    for j, name in enumerate(model.features):
        width = scorer.n_categories.get(j, 1)
        expected = np.zeros(len(X))
        for c in range(column, column + width):
            value = (
                (np.nan_to_num(X[:, j], nan=-1) == c - column).astype(float)
                if width > 1
                else np.where(np.isnan(X[:, j]), scorer.fill[j], X[:, j])
            )
            expected += scorer.coef[c] / scorer.scale[c] * (value - scorer.center[c])
        column += width
        assert np.allclose(explained.values[:, j], expected, atol=1e-12), name
    assert explained.base == scorer.intercept


def test_reasons_are_the_largest_positive_contributions_with_the_spec_texts(
    trained: tuple[KeelModel, pd.DataFrame],
) -> None:
    model, frame = trained
    X = model.preprocessor.transform(frame)
    explained = Explainer(model).explain_matrix(X)

    reasons = top_reasons(explained, X, model)

    for row, given in enumerate(reasons):
        positive = sorted((v for v in explained.values[row] if v > 0), reverse=True)
        assert [r.contribution for r in given] == pytest.approx(positive[:2])
        for reason in given:
            j = model.features.index(reason.feature)
            assert reason.text == TEXTS.get(reason.feature, reason.feature)
            if reason.feature == "region":
                assert reason.value in {"north", "south", "east", "west"}
            else:
                assert reason.value == pytest.approx(X[row, j])
    assert any(len(r) == 2 for r in reasons) and any(
        r[0].feature == "late_payments" for r in reasons if r
    )


def test_a_row_with_no_adverse_push_gets_no_reasons(
    trained: tuple[KeelModel, pd.DataFrame],
) -> None:
    model, frame = trained
    X = model.preprocessor.transform(frame)
    explained = Explainer(model).explain_matrix(X)
    best = int(np.argmin(explained.values.max(axis=1)))

    reasons = top_reasons(explained, X, model, k=20)[best]

    assert len(reasons) == int((explained.values[best] > 0).sum())
