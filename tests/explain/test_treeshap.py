"""Our TreeSHAP kernel gives LightGBM's and shap's exact values, for every kind of split."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keel.errors import IntegrityError
from keel.explain.treeshap import TreeShap

from reference import CATEGORICAL, reference_booster, reference_data

TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def reference() -> lgb.Booster:
    return reference_booster()


def _kernel(booster: lgb.Booster) -> TreeShap:
    return TreeShap.from_model_text(booster.model_to_string())


def test_reference_model_matches_native_and_adds_up_to_the_margin(reference: lgb.Booster) -> None:
    X, _ = reference_data(rows=3000, seed=1)
    X[:50, CATEGORICAL] = [
        np.nan,
        -1.0,
        -0.5,
        12.0,
        99.0,
        3.7,
        1e9,
        0.0,
        11.0,
        5.0,
    ] * 5  # odd categories

    ours = _kernel(reference).contributions(X)

    assert reference.num_trees() == 300 and reference.num_feature() == 25
    assert np.abs(ours - reference.predict(X, pred_contrib=True)).max() < TOLERANCE
    assert np.abs(ours.sum(axis=1) - reference.predict(X, raw_score=True)).max() < TOLERANCE


@pytest.mark.filterwarnings("ignore:LightGBM binary classifier:UserWarning")
def test_reference_model_matches_shap_tree_explainer(reference: lgb.Booster) -> None:
    shap = pytest.importorskip("shap")
    X, _ = reference_data(rows=400, seed=2)
    explainer = shap.TreeExplainer(reference)

    expected = np.asarray(explainer.shap_values(X))
    ours = _kernel(reference).contributions(X)

    expected = expected[-1] if expected.ndim == 3 else expected
    assert np.abs(ours[:, :-1] - expected).max() < TOLERANCE
    assert abs(ours[0, -1] - float(np.ravel(explainer.expected_value)[-1])) < TOLERANCE


def test_one_row_and_a_batch_give_the_same_values(reference: lgb.Booster) -> None:
    X, _ = reference_data(rows=200, seed=3)
    kernel = _kernel(reference)

    batch = kernel.contributions(X)
    single = np.vstack([kernel.contributions(X[i : i + 1]) for i in range(len(X))])

    assert np.abs(batch - single).max() < 1e-12


def _train(X: np.ndarray, y: np.ndarray, categorical: list[int], **params: object) -> lgb.Booster:
    base = {
        "objective": "binary",
        "verbosity": -1,
        "num_threads": 1,
        "min_data_in_leaf": 5,
        "seed": 1,
    }
    return lgb.train(
        {**base, **params}, lgb.Dataset(X, y, categorical_feature=categorical or "auto"), 20
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    leaves=st.integers(2, 64),
    missing=st.sampled_from(["nan", "zero", "none"]),
    categorical=st.booleans(),
    nan_share=st.sampled_from([0.0, 0.1, 0.4]),
)
def test_random_models_match_native(
    seed: int, leaves: int, missing: str, categorical: bool, nan_share: float
) -> None:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(600, 6))
    X[:, 1] = np.round(X[:, 1])  # many exact zeros, for zero-as-missing
    if categorical:
        X[:, 5] = rng.integers(0, 40, size=600)
    y = (X[:, 0] + np.sin(3 * X[:, 2]) + (X[:, 5] % 4 == 1) + rng.normal(size=600) > 0.5).astype(
        int
    )
    X[rng.random(X.shape) < nan_share] = np.nan
    params = {
        "num_leaves": leaves,
        "max_depth": -1,
        "min_data_in_leaf": 3,
        "seed": seed,
        "zero_as_missing": missing == "zero",
        "use_missing": missing != "none",
        "max_cat_to_onehot": 4,
    }
    booster = _train(X, y, [5] if categorical else [], **params)
    probe = np.vstack([X, rng.normal(size=(50, 6)) * 3, np.zeros((1, 6)), np.full((1, 6), np.nan)])

    ours = _kernel(booster).contributions(probe)

    assert np.abs(ours - booster.predict(probe, pred_contrib=True)).max() < TOLERANCE


def test_single_leaf_trees_are_all_base_value() -> None:
    X = np.ones((100, 3))
    y = np.r_[np.zeros(50), np.ones(50)]
    booster = _train(X, y, [])  # nothing to split on: every tree is one leaf

    ours = _kernel(booster).contributions(X[:3])

    assert np.allclose(ours[:, :-1], 0.0)
    assert np.abs(ours - booster.predict(X[:3], pred_contrib=True)).max() < TOLERANCE


def test_deep_trees_with_long_paths_match_native() -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(4000, 30))
    y = (np.sin(X[:, :30].sum(axis=1)) + rng.normal(scale=0.3, size=4000) > 0).astype(int)
    booster = _train(X, y, [], num_leaves=400, min_data_in_leaf=2, max_depth=-1)
    kernel = _kernel(booster)

    ours = kernel.contributions(X[:300])

    assert int(kernel.leaves[1].max()) >= 15  # paths through 15+ distinct features
    assert np.abs(ours - booster.predict(X[:300], pred_contrib=True)).max() < TOLERANCE


def test_wrong_shapes_and_foreign_models_are_refused(reference: lgb.Booster) -> None:
    kernel = _kernel(reference)
    with pytest.raises(ValueError, match="25 columns"):
        kernel.contributions(np.zeros((2, 24)))
    multiclass = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbosity": -1},
        lgb.Dataset(np.random.default_rng(0).normal(size=(90, 2)), np.arange(90) % 3),
        2,
    )
    with pytest.raises(IntegrityError, match="single-output"):
        _kernel(multiclass)


def test_tabulated_and_quadrature_leaves_agree(reference: lgb.Booster) -> None:
    X, _ = reference_data(rows=100, seed=4)
    text = reference.model_to_string()

    tabulated = TreeShap.from_model_text(text, table_depth=8).contributions(X)
    quadrature = TreeShap.from_model_text(text, table_depth=0).contributions(X)

    assert np.abs(tabulated - quadrature).max() < 1e-12
