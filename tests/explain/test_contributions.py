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
from keel.models.logistic import LogisticScorer, fit_logistic
from keel.models.preprocess import Preprocessor
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


def _design_columns(scorer: LogisticScorer, X: np.ndarray, j: int) -> list[np.ndarray]:
    """Feature j's design columns before standardizing, computed here from the stored numbers."""
    column = X[:, j]
    if j in scorer.n_categories:
        codes = np.nan_to_num(column, nan=-1)
        return [(codes == k).astype(float) for k in range(scorer.n_categories[j])]
    value = np.where(np.isnan(column), scorer.fill[j], column)
    transforms = scorer.transforms
    if transforms is None:
        return [value]
    low, high = transforms.lower[j], transforms.upper[j]
    if low is not None and high is not None:
        value = np.minimum(np.maximum(value, low), high)
    if transforms.log[j]:
        value = np.sign(value) * np.log1p(np.abs(value))
    flag = [np.isnan(column).astype(float)] if j in transforms.flagged else []
    return [value, *flag]


def _check_folded(model: KeelModel, X: np.ndarray) -> None:
    """Each feature's contribution is the sum, over its own design columns (value, missing
    flag, one-hot), of coefficient x (value - training mean) / scale."""
    scorer = model.scorer
    assert isinstance(scorer, LogisticScorer)
    explained = Explainer(model).explain_matrix(X)
    column = 0
    for j, name in enumerate(model.features):
        expected = np.zeros(len(X))
        for value in _design_columns(scorer, X, j):
            expected += scorer.coef[column] / scorer.scale[column] * (value - scorer.center[column])
            column += 1
        assert np.allclose(explained.values[:, j], expected, atol=1e-12), name
    assert column == len(scorer.coef)
    assert explained.base == scorer.intercept
    assert np.abs(explained.margin() - scorer.margin(X)).max() < 1e-9


def test_logistic_contribution_is_coefficient_times_value_minus_training_mean() -> None:
    model, frame = _model("logistic")

    _check_folded(model, model.preprocessor.transform(frame.head(50)))


def _messy_frame(rows: int = 3000, seed: int = 5) -> pd.DataFrame:
    """Heavy-tailed amounts, a score missing where risk is high, a categorical with gaps."""
    rng = np.random.default_rng(seed)
    balance = rng.lognormal(7, 2, rows)
    score = rng.normal(size=rows)
    unknown = rng.random(rows) < 0.25
    flow = rng.standard_t(2, rows) * 500
    region = rng.choice(["north", "south", "east"], rows).astype(object)
    region[rng.random(rows) < 0.05] = None
    logit = 0.5 * (np.log(balance) - 7) - score + 1.2 * unknown + 0.2 * np.log1p(np.abs(flow))
    return pd.DataFrame(
        {
            "balance": balance,
            "score": np.where(unknown, np.nan, score),
            "flow": flow,
            "region": region,
            "bad": (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int),
        }
    )


def test_logistic_reasons_stay_exact_with_missing_values_and_heavy_tails() -> None:
    frame = _messy_frame()
    pre = Preprocessor(["balance", "score", "flow", "region"], ["region"]).fit(frame)
    X = pre.transform(frame)
    scorer = fit_logistic(
        X, frame["bad"].to_numpy(), params={"C": 1.0}, n_categories={3: 3}, seed=0
    )
    model = KeelModel(pre, scorer, target="bad", positive=1, threshold=0.5)
    assert scorer.transforms is not None
    assert scorer.transforms.flagged == [1] and scorer.transforms.log[:3] == [True, False, True]
    assert scorer.feature_widths() == [1, 2, 1, 3]
    extreme = frame.head(4).assign(balance=[1e15, 0.0, np.nan, 5.0], flow=[-1e9, 1e9, 0.0, np.nan])

    _check_folded(model, pre.transform(pd.concat([frame, extreme], ignore_index=True)))


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
