"""keel.training.tuning and keel.training.trainer: seeded search, selection, learning curve."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from keel.errors import TrainingError
from keel.spec import ProjectSpec, parse_spec
from keel.training.trainer import TrainingOutcome, learning_curve, train_model
from keel.training.tuning import (
    FamilyResult,
    Matrices,
    fit_family,
    tune_family,
    validation_score,
)

MODEL_FEATURES = ["x1", "x2", "grade", "bill", "limit", "ratio"]
NEVER_FEATURES = ["sex", "default", "id", "note"]


def _frame(n: int, kind: str, seed: int = 0) -> pd.DataFrame:
    """``linear``: a logistic signal (and a protected column that carries some of it);
    ``xor``: an interaction no linear model can see."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    grade = rng.choice(["a", "b", "c"], size=n)
    bill = rng.gamma(2.0, 100.0, size=n)
    limit = rng.choice([100.0, 200.0, 400.0], size=n)
    sex = rng.choice(["f", "m"], size=n)
    if kind == "linear":
        margin = x1 - x2 + 0.5 * (sex == "m")
    else:
        margin = 3.0 * np.sign(x1 * x2) + 1.0 * (bill / limit > 1)
    y = (rng.random(n) < 1 / (1 + np.exp(-margin))).astype(int)
    x1[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "sex": sex,
            "x1": x1,
            "x2": x2,
            "grade": grade,
            "bill": bill,
            "limit": limit,
            "note": rng.normal(size=n),
            "default": y,
        }
    )


def _spec(
    *,
    trials: int = 5,
    metric: str = "auc",
    pruning: bool = True,
    seed: int = 5,
    families: list[str] | None = None,
    folds: int | str = 1,
    selection: str = "one_se",
) -> ProjectSpec:
    """The test project; a single validation split unless ``folds`` says otherwise."""
    return parse_spec(
        {
            "project": "tuning-test",
            "seed": seed,
            "data": {"source": "unused.csv", "id_column": "id"},
            "contract": {
                "columns": {
                    "id": {"dtype": "int", "unique": True},
                    "sex": {"dtype": "str"},
                    "x1": {"dtype": "float", "nullable": True},
                    "x2": {"dtype": "float"},
                    "grade": {"dtype": "str"},
                    "bill": {"dtype": "float"},
                    "limit": {"dtype": "float"},
                    "note": {"dtype": "float"},
                    "default": {"dtype": "int"},
                }
            },
            "target": {"column": "default"},
            "protected": ["sex"],
            "features": {
                "categorical": ["grade"],
                "derived": {"ratio": "bill / limit"},
                "exclude": ["note"],
            },
            "models": {
                "families": families or ["logistic", "lightgbm"],
                "lightgbm": {
                    "max_rounds": 150,
                    "early_stopping_rounds": 20,
                    "min_child_samples": {"low": 5, "high": 60},
                },
            },
            "tuning": {
                "trials": trials,
                "threads": 1,
                "metric": metric,
                "pruning": pruning,
                "folds": folds,
                "selection": selection,
            },
        }
    )


@pytest.fixture(scope="module")
def linear() -> tuple[pd.DataFrame, ProjectSpec, TrainingOutcome]:
    frame, spec = _frame(600, "linear"), _spec()
    return frame, spec, train_model(frame, spec)


@pytest.fixture(scope="module")
def xor() -> tuple[pd.DataFrame, ProjectSpec, TrainingOutcome]:
    frame, spec = _frame(1500, "xor"), _spec()
    return frame, spec, train_model(frame, spec)


def _without_seconds(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in t.items() if k != "seconds"} for t in trials]


@pytest.mark.parametrize("family", ["logistic", "lightgbm"])
def test_same_seed_gives_byte_identical_models(
    xor: tuple[pd.DataFrame, ProjectSpec, TrainingOutcome], family: str
) -> None:
    _, spec, outcome = xor
    first = tune_family(family, outcome.matrices, spec, features=MODEL_FEATURES)
    second = tune_family(family, outcome.matrices, spec, features=MODEL_FEATURES)
    assert first.model.to_bytes() == second.model.to_bytes()
    assert first.best_params == second.best_params
    assert first.best_value == second.best_value
    assert _without_seconds(first.trials) == _without_seconds(second.trials)


@pytest.mark.parametrize("family", ["logistic", "lightgbm"])
def test_another_seed_searches_other_parameters(
    xor: tuple[pd.DataFrame, ProjectSpec, TrainingOutcome], family: str
) -> None:
    _, spec, outcome = xor
    first = tune_family(family, outcome.matrices, spec, features=MODEL_FEATURES)
    other = tune_family(family, outcome.matrices, _spec(seed=6), features=MODEL_FEATURES)
    assert [t["params"] for t in first.trials] != [t["params"] for t in other.trials]


def test_training_twice_gives_the_same_artifact_bytes(
    linear: tuple[pd.DataFrame, ProjectSpec, TrainingOutcome],
) -> None:
    frame, spec, outcome = linear
    again = train_model(frame, spec)
    assert again.family == outcome.family
    assert again.model.files() == outcome.model.files()
    for family in spec.models.families:
        assert _without_seconds(again.results[family].trials) == _without_seconds(
            outcome.results[family].trials
        )


def _check_trials(result: FamilyResult, spec: ProjectSpec) -> None:
    trials = result.trials
    assert [t["number"] for t in trials] == list(range(spec.tuning.trials))
    assert all(t["family"] == result.family for t in trials)
    assert all(t["state"] in ("complete", "pruned") for t in trials)
    assert all(isinstance(t["seconds"], float) and t["seconds"] >= 0 for t in trials)
    for t in trials:
        if t["state"] == "complete":
            assert isinstance(t["value"], float)
        else:
            assert t["value"] is None


def test_every_logistic_trial_is_recorded_with_its_params(
    xor: tuple[pd.DataFrame, ProjectSpec, TrainingOutcome],
) -> None:
    _, spec, outcome = xor
    result = outcome.results["logistic"]
    _check_trials(result, spec)
    space = spec.models.logistic.C
    for t in result.trials:
        assert set(t["params"]) == {"C"}
        assert space.low <= t["params"]["C"] <= space.high


def test_every_lightgbm_trial_is_recorded_with_its_params_and_rounds(
    xor: tuple[pd.DataFrame, ProjectSpec, TrainingOutcome],
) -> None:
    _, spec, outcome = xor
    result = outcome.results["lightgbm"]
    _check_trials(result, spec)
    space = spec.models.lightgbm
    names = {
        "num_leaves",
        "learning_rate",
        "min_child_samples",
        "feature_fraction",
        "bagging_fraction",
        "lambda_l2",
    }
    for t in result.trials:
        assert names <= set(t["params"])
        assert space.num_leaves.low <= t["params"]["num_leaves"] <= space.num_leaves.high
        assert (
            space.min_child_samples.low
            <= t["params"]["min_child_samples"]
            <= space.min_child_samples.high
        )
        assert space.learning_rate.low <= t["params"]["learning_rate"] <= space.learning_rate.high
        if t["state"] == "complete":
            assert 1 <= t["params"]["rounds"] <= space.max_rounds


def test_best_value_is_the_best_completed_trial(
    xor: tuple[pd.DataFrame, ProjectSpec, TrainingOutcome],
) -> None:
    _, _, outcome = xor
    for result in outcome.results.values():
        values = [t["value"] for t in result.trials if t["state"] == "complete"]
        assert result.best_value == max(values)
        best = next(t for t in result.trials if t["value"] == result.best_value)
        searched = {
            k: v for k, v in result.best_params.items() if k != "max_iter"
        }  # max_iter is fixed
        assert {k: best["params"][k] for k in searched} == searched


def test_on_trial_is_called_once_per_trial(
    xor: tuple[pd.DataFrame, ProjectSpec, TrainingOutcome],
) -> None:
    _, spec, outcome = xor
    seen: list[tuple[str, int, float | None]] = []
    result = tune_family(
        "logistic",
        outcome.matrices,
        spec,
        features=MODEL_FEATURES,
        on_trial=lambda family, number, value: seen.append((family, number, value)),
    )
    assert seen == [("logistic", t["number"], t["value"]) for t in result.trials]
    assert len(seen) == spec.tuning.trials


def test_pruning_stops_some_lightgbm_trials_and_never_logistic_ones(
    xor: tuple[pd.DataFrame, ProjectSpec, TrainingOutcome],
) -> None:
    _, _, outcome = xor
    spec = _spec(trials=14)
    gbdt = tune_family("lightgbm", outcome.matrices, spec, features=MODEL_FEATURES)
    states = [t["state"] for t in gbdt.trials]
    assert len(states) == 14
    assert "pruned" in states
    # The median pruner waits for five finished trials before it judges any.
    assert states[:5] == ["complete"] * 5
    assert all("rounds" not in t["params"] for t in gbdt.trials if t["state"] == "pruned")
    linear = tune_family("logistic", outcome.matrices, spec, features=MODEL_FEATURES)
    assert [t["state"] for t in linear.trials] == ["complete"] * 14


def test_without_pruning_every_lightgbm_trial_completes(
    xor: tuple[pd.DataFrame, ProjectSpec, TrainingOutcome],
) -> None:
    _, _, outcome = xor
    result = tune_family(
        "lightgbm", outcome.matrices, _spec(trials=14, pruning=False), features=MODEL_FEATURES
    )
    assert [t["state"] for t in result.trials] == ["complete"] * 14


@pytest.mark.parametrize(("data", "winner"), [("linear", "logistic"), ("xor", "lightgbm")])
def test_train_model_picks_the_family_with_the_better_validation_metric(
    data: str, winner: str, request: pytest.FixtureRequest
) -> None:
    _, _, outcome = request.getfixturevalue(data)
    best = {family: result.best_value for family, result in outcome.results.items()}
    assert outcome.family == max(best, key=best.__getitem__) == winner
    assert outcome.model.family == winner
    chosen = outcome.results[winner]
    # the validation figures are the chosen candidate's; the final model is it refit on more rows
    _, p = outcome.validation_predictions()
    np.testing.assert_array_equal(p, chosen.model.probability(outcome.matrices.X_valid))
    assert outcome.selection["refit"]["rows"] == len(outcome.final_matrices().y_train)
    assert outcome.params == chosen.best_params
    assert outcome.model.metadata["params"] == chosen.best_params


def test_chosen_model_reproduces_its_validation_value_from_the_raw_frame(
    linear: tuple[pd.DataFrame, ProjectSpec, TrainingOutcome],
) -> None:
    frame, spec, outcome = linear
    rows = frame.iloc[outcome.split.validation]
    candidate = outcome.results[outcome.family].model  # before its refit on train + validation
    p = candidate.probability(outcome.model.preprocessor.transform(rows))
    assert (
        validation_score("auc", rows["default"].to_numpy(), p)
        == outcome.results[outcome.family].best_value
    )


def test_test_rows_are_held_out_of_tuning(
    linear: tuple[pd.DataFrame, ProjectSpec, TrainingOutcome],
) -> None:
    frame, _, outcome = linear
    data, split = outcome.matrices, outcome.split
    assert len(data.y_train) == len(split.train) and len(data.y_valid) == len(split.validation)
    assert len(outcome.y_test) == len(split.test)
    np.testing.assert_array_equal(outcome.y_test, frame["default"].to_numpy()[split.test])
    np.testing.assert_array_equal(
        outcome.X_test, outcome.model.preprocessor.transform(frame.iloc[split.test])
    )


def test_log_loss_is_minimized() -> None:
    frame, spec = _frame(1500, "xor"), _spec(metric="log_loss", trials=4)
    outcome = train_model(frame, spec)
    best = {family: result.best_value for family, result in outcome.results.items()}
    assert outcome.family == min(best, key=best.__getitem__) == "lightgbm"
    for result in outcome.results.values():
        values = [t["value"] for t in result.trials if t["state"] == "complete"]
        assert result.best_value == min(values)
        assert result.best_value > 0
    rows = frame.iloc[outcome.split.validation]
    candidate = outcome.results["lightgbm"].model
    p = candidate.probability(outcome.model.preprocessor.transform(rows))
    assert validation_score("log_loss", rows["default"].to_numpy(), p) == best["lightgbm"]
    assert outcome.tuning_summary("log_loss")["chosen_family"] == "lightgbm"


def test_validation_score_metrics_against_hand_computed_values() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.9])
    assert validation_score("auc", y, p) == pytest.approx(0.75)
    # AP: ranks 0.9 (pos), 0.6 (neg), 0.4 (pos): precision 1 at recall 0.5, 2/3 at recall 1.
    assert validation_score("average_precision", y, p) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    expected = -np.mean(np.log([0.9, 0.4, 0.4, 0.9]))
    assert validation_score("log_loss", y, p) == pytest.approx(expected)


@pytest.mark.parametrize("data", ["linear", "xor"])
def test_protected_attributes_and_the_target_never_reach_the_model(
    data: str, request: pytest.FixtureRequest
) -> None:
    frame, _, outcome = request.getfixturevalue(data)
    model = outcome.model
    assert model.features == MODEL_FEATURES
    inputs = model.preprocessor.inputs()
    assert inputs == ["x1", "x2", "grade", "bill", "limit"]
    for column in NEVER_FEATURES:
        assert column not in model.features
        assert column not in inputs
    assert outcome.matrices.X_train.shape[1] == len(MODEL_FEATURES)
    # The model scores a frame that lacks every excluded column, with the same numbers.
    rows = frame.iloc[outcome.split.test]
    np.testing.assert_array_equal(
        model.predict_proba(rows.drop(columns=NEVER_FEATURES)), model.predict_proba(rows)
    )


def test_no_feature_left_is_a_training_error() -> None:
    spec = parse_spec(
        {
            "project": "empty",
            "data": {"source": "unused.csv"},
            "contract": {"columns": {"sex": {"dtype": "str"}, "default": {"dtype": "int"}}},
            "target": {"column": "default"},
            "protected": ["sex"],
        }
    )
    frame = pd.DataFrame({"sex": ["f", "m"] * 10, "default": [0, 1] * 10})
    with pytest.raises(TrainingError, match=r"no feature columns remain"):
        train_model(frame, spec)


@pytest.mark.parametrize("data", ["linear", "xor"])
def test_learning_curve_grows_train_sizes_with_metrics_in_unit_range(
    data: str, request: pytest.FixtureRequest
) -> None:
    _, spec, outcome = request.getfixturevalue(data)
    points = learning_curve(outcome, spec)
    sizes = [p["train_size"] for p in points]
    n_train = len(outcome.split.train)
    assert len(points) == 5
    assert sizes == sorted(set(sizes))
    assert sizes[-1] == n_train
    assert sizes[0] == max(int(n_train * 0.1), 50)
    for point in points:
        assert point["metric"] == "auc"
        assert 0.0 <= point["train_metric"] <= 1.0
        assert 0.0 <= point["validation_metric"] <= 1.0


def test_learning_curve_on_the_full_training_rows_refits_the_chosen_model(
    linear: tuple[pd.DataFrame, ProjectSpec, TrainingOutcome],
) -> None:
    _, spec, outcome = linear
    last = learning_curve(outcome, spec, shares=(1.0,))[0]
    assert last["validation_metric"] == pytest.approx(
        outcome.results[outcome.family].best_value, abs=1e-12
    )


def test_learning_curve_boosts_the_chosen_rounds_without_stopping_on_its_validation_rows(
    xor: tuple[pd.DataFrame, ProjectSpec, TrainingOutcome],
) -> None:
    _, spec, outcome = xor
    assert outcome.family == "lightgbm"
    rounds = outcome.model.scorer.booster.current_iteration()
    half, full = learning_curve(outcome, spec, shares=(0.5, 1.0))
    # The full share refits the chosen model (its early-stopped rounds, fixed in advance).
    assert full["validation_metric"] == pytest.approx(
        outcome.results["lightgbm"].best_value, abs=1e-12
    )
    data = outcome.matrices
    rows = np.sort(
        np.random.default_rng(spec.seed).permutation(len(data.y_train))[: half["train_size"]]
    )
    subset = Matrices(
        data.X_train[rows],
        data.y_train[rows],
        data.X_valid,
        data.y_valid,
        data.categorical,
        data.n_categories,
    )
    fixed = fit_family(
        "lightgbm", outcome.params, subset, spec, features=MODEL_FEATURES, rounds=rounds
    )
    assert half["validation_metric"] == validation_score(
        "auc", data.y_valid, fixed.probability(data.X_valid)
    )


def test_learning_curve_for_a_log_loss_project_reports_auc() -> None:
    frame, spec = _frame(600, "linear"), _spec(metric="log_loss", trials=2, families=["logistic"])
    outcome = train_model(frame, spec)
    points = learning_curve(outcome, spec, shares=(0.5, 1.0))
    assert [p["metric"] for p in points] == ["auc", "auc"]
    assert points[0]["train_size"] < points[1]["train_size"]
    assert all(0.0 <= p["validation_metric"] <= 1.0 for p in points)


def test_folds_score_each_candidate_on_every_fold_and_refit_on_training(tmp_path) -> None:
    """With folds, a trial's value is its mean over them.

    The model is then refit for their mean rounds.
    """
    from keel.features.cleaning import target_vector
    from keel.models.preprocess import Preprocessor
    from keel.spec import parse_spec
    from keel.training.tuning import Matrices, tune_family, validation_score

    from factories import loans_spec, make_loans

    raw = loans_spec("data.csv")
    raw["tuning"] = {"trials": 3, "metric": "auc", "pruning": False}
    spec = parse_spec(raw)
    frame = make_loans(3000, seed=1)
    y = target_vector(frame, spec).to_numpy()
    features = spec.model_features()

    def matrices(train: slice, valid: slice) -> Matrices:
        pre = Preprocessor(features, list(spec.features.categorical), dict(spec.features.derived))
        pre.fit(frame.iloc[train])
        return Matrices(
            pre.transform(frame.iloc[train]),
            y[train],
            pre.transform(frame.iloc[valid]),
            y[valid],
            pre.categorical_indices(),
            {j: len(pre.categories_[pre.features[j]]) for j in pre.categorical_indices()},
        )

    data = matrices(slice(2000, 3000), slice(0, 10))
    folds = [
        matrices(slice(0, 800), slice(800, 1000)),
        matrices(slice(1000, 1800), slice(1800, 2000)),
    ]
    result = tune_family("lightgbm", data, spec, features=features, folds=folds)
    best = max(result.trials, key=lambda t: t["value"])
    assert len(best["params"]["fold_values"]) == 2
    assert best["value"] == pytest.approx(np.mean(best["params"]["fold_values"]), abs=1e-6)
    assert result.refit_rounds == round(np.mean(best["params"]["rounds"]))
    assert result.model.booster.current_iteration() == result.refit_rounds
    # The refit model learned from the training rows, not from a fold's.
    assert validation_score("auc", data.y_train, result.model.probability(data.X_train)) > 0.7
