"""keel.training.trainer: K-fold tuning, honest validation scores, and the choice of family."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from keel.models.logistic import LogisticScorer
from keel.spec import ProjectSpec, parse_spec
from keel.training.split import AUTO_FOLDS, split_rows
from keel.training.trainer import (
    BOOTSTRAP_ROUNDS,
    TrainingOutcome,
    learning_curve,
    select_family,
    standard_error,
    train_model,
)
from keel.training.tuning import FamilyResult, fit_family, validation_score

FEATURES = ["x1", "x2", "x3", "grade"]


def _table(n: int, seed: int = 0, *, days: int | None = None) -> pd.DataFrame:
    """A mostly linear signal with a weak interaction; ``days``: one time stamp per row."""
    rng = np.random.default_rng(seed)
    x1, x2, x3 = rng.normal(size=(3, n))
    grade = rng.choice(["a", "b", "c"], size=n)
    margin = 0.9 * x1 - 0.7 * x2 + 0.4 * x1 * x3 + 0.3 * (grade == "a") - 0.8
    y = (rng.random(n) < 1 / (1 + np.exp(-margin))).astype(int)
    frame = pd.DataFrame({"id": np.arange(n), "x1": x1, "x2": x2, "x3": x3, "grade": grade})
    frame["y"] = y
    if days is not None:
        offsets = np.sort(rng.integers(0, days * 24 * 3600, size=n))
        frame["when"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(offsets, unit="s")
    return frame


def _spec(
    *,
    folds: int | str = "auto",
    selection: str = "one_se",
    families: tuple[str, ...] = ("logistic", "lightgbm"),
    trials: int = 4,
    metric: str = "auc",
    split: dict[str, Any] | None = None,
) -> ProjectSpec:
    columns: dict[str, Any] = {
        "id": {"dtype": "int", "unique": True},
        "x1": {"dtype": "float"},
        "x2": {"dtype": "float"},
        "x3": {"dtype": "float"},
        "grade": {"dtype": "str"},
        "y": {"dtype": "int"},
    }
    data: dict[str, Any] = {"source": "unused.csv", "id_column": "id"}
    if split and split.get("method") in ("time", "delayed"):
        columns["when"] = {"dtype": "datetime"}
        data["time_column"] = "when"
    return parse_spec(
        {
            "project": "selection-test",
            "seed": 3,
            "data": data,
            "contract": {"columns": columns},
            "target": {"column": "y"},
            "features": {"categorical": ["grade"]},
            "split": split or {},
            "models": {
                "families": list(families),
                "lightgbm": {"max_rounds": 120, "early_stopping_rounds": 15},
            },
            "tuning": {
                "trials": trials,
                "threads": 1,
                "metric": metric,
                "folds": folds,
                "selection": selection,
                "pruning": False,
            },
        }
    )


@pytest.fixture(scope="module")
def small() -> tuple[pd.DataFrame, ProjectSpec, TrainingOutcome]:
    """A 1,000-row table: "auto" tunes on five stratified folds."""
    frame, spec = _table(1000), _spec()
    return frame, spec, train_model(frame, spec)


def test_a_small_table_is_tuned_on_five_folds_of_its_train_and_validation_rows(
    small: tuple[pd.DataFrame, ProjectSpec, TrainingOutcome],
) -> None:
    frame, spec, outcome = small
    split = outcome.split
    single = split_rows(frame["y"].to_numpy(), spec.split, seed=spec.seed)
    np.testing.assert_array_equal(split.test, single.test)  # the test rows stay untouched
    pool = np.sort(np.concatenate([single.train, single.validation]))
    np.testing.assert_array_equal(split.train, pool)
    assert len(split.folds) == len(outcome.folds) == AUTO_FOLDS
    assert outcome.matrices.X_train.shape[0] == len(pool)  # the final fit uses the whole pool
    for result in outcome.results.values():
        best = next(t for t in result.trials if t["value"] == result.best_value)
        assert best["params"]["fold_values"] == [round(v, 6) for v in result.fold_values]
        assert result.best_value == pytest.approx(np.mean(result.fold_values), abs=1e-12)
        assert len(result.predictions) == AUTO_FOLDS
    lightgbm = outcome.results["lightgbm"]
    assert lightgbm.refit_rounds == round(np.mean(best_rounds(lightgbm)))
    assert lightgbm.model.booster.current_iteration() == lightgbm.refit_rounds


def best_rounds(result: FamilyResult) -> list[int]:
    """The per-fold boosting rounds of a family's best trial."""
    best = next(t for t in result.trials if t["value"] == result.best_value)
    return list(best["params"]["rounds"])


def test_validation_predictions_come_from_models_that_never_saw_those_rows(
    small: tuple[pd.DataFrame, ProjectSpec, TrainingOutcome],
) -> None:
    frame, spec, outcome = small
    y, p = outcome.validation_predictions()
    held_out = np.concatenate([valid for _, valid in outcome.split.folds])
    np.testing.assert_array_equal(y, frame["y"].to_numpy()[held_out])
    assert len(p) == len(np.unique(held_out)) == len(outcome.split.train)
    # Fold by fold, the scores are the chosen candidate refitted on that fold's training rows.
    result = outcome.results[outcome.family]
    start = 0
    for k, fold in enumerate(outcome.folds):
        refit = fit_family(
            outcome.family, outcome.params, fold, spec, features=outcome.model.features
        )
        stop = start + len(fold.y_valid)
        np.testing.assert_allclose(p[start:stop], refit.probability(fold.X_valid), rtol=1e-12)
        assert validation_score("auc", fold.y_valid, p[start:stop]) == result.fold_values[k]
        start = stop
    # The final model has trained on every pool row: its AUC there is higher than held out.
    data = outcome.matrices
    in_sample = validation_score(
        "auc", data.y_train, outcome.model.scorer.probability(data.X_train)
    )
    assert validation_score("auc", y, p) < in_sample


@pytest.mark.parametrize("family", ["logistic", "lightgbm"])
def test_without_folds_the_final_model_is_refit_on_train_and_validation_rows(family: str) -> None:
    frame, spec = _table(1000), _spec(folds=1, trials=2, families=(family,))
    outcome = train_model(frame, spec)
    assert outcome.split.folds == () and outcome.folds == ()
    result = outcome.results[family]
    # Validation figures come from the candidate fit on the train rows alone ...
    y, p = outcome.validation_predictions()
    np.testing.assert_array_equal(y, frame["y"].to_numpy()[outcome.split.validation])
    np.testing.assert_array_equal(p, result.model.probability(outcome.matrices.X_valid))
    assert validation_score("auc", y, p) == result.best_value
    # ... and the final model is that candidate refit on every row but the test's.
    refit = outcome.selection["refit"]
    assert refit["rows"] == len(outcome.split.train) + len(outcome.split.validation)
    data = outcome.final_matrices()
    pool = np.concatenate([outcome.split.train, outcome.split.validation])
    np.testing.assert_array_equal(
        data.X_train, outcome.model.preprocessor.transform(frame.iloc[pool])
    )
    np.testing.assert_array_equal(data.y_train, frame["y"].to_numpy()[pool])
    rounds = refit.get("rounds")
    assert (rounds is not None) == (family == "lightgbm")
    if rounds is not None:
        assert rounds == result.model.rounds() == outcome.model.scorer.rounds()
    expected = fit_family(
        family, result.best_params, data, spec, features=outcome.model.features, rounds=rounds
    )
    final = outcome.model.scorer.probability(outcome.X_test)
    np.testing.assert_array_equal(final, expected.probability(outcome.X_test))
    assert not np.array_equal(final, result.model.probability(outcome.X_test))


def test_refit_train_keeps_the_candidate_fit_on_the_train_rows() -> None:
    frame = _table(1000)
    spec = _spec(folds=1, trials=2, families=("lightgbm",))
    spec = spec.model_copy(update={"tuning": spec.tuning.model_copy(update={"refit": "train"})})
    outcome = train_model(frame, spec)
    assert "refit" not in outcome.selection
    assert outcome.model.scorer is outcome.results["lightgbm"].model


def test_delayed_validation_predictions_hold_only_rows_of_the_folds_validation_days() -> None:
    frame = _table(3000, seed=1, days=60)
    split = {
        "method": "delayed",
        "train_start": "2024-02-05",
        "train_days": 7,
        "delay_days": 7,
        "test_days": 7,
        "validation_folds": 3,
    }
    spec = _spec(folds=5, split=split, trials=2)  # the delayed split keeps its own folds
    outcome = train_model(frame, spec)
    assert len(outcome.folds) == 3
    day = frame["when"].dt.floor("D")
    y, p = outcome.validation_predictions()
    held_out = np.concatenate([valid for _, valid in outcome.split.folds])
    np.testing.assert_array_equal(y, frame["y"].to_numpy()[held_out])
    assert len(p) == len(held_out)
    assert day[held_out].max() == pd.Timestamp("2024-02-11")  # the last training day
    assert day[held_out].min() == pd.Timestamp("2024-01-22")
    for train, valid in outcome.split.folds:
        assert day[train].max() + pd.Timedelta(days=7) < day[valid].min()


def _result(family: str, values: list[float], *, trials: int = 3) -> FamilyResult:
    return FamilyResult(
        family,
        float(np.mean(values)),
        {},
        LogisticScorer.__new__(LogisticScorer),  # a placeholder: selection never scores it
        [{"number": i} for i in range(trials)],
        fold_values=values,
        predictions=[np.zeros(1)] * len(values),
    )


def test_one_se_prefers_logistic_within_one_standard_error_of_the_best() -> None:
    results = {
        "lightgbm": _result("lightgbm", [0.80, 0.83, 0.78, 0.82, 0.81]),  # mean 0.808
        "logistic": _result("logistic", [0.79, 0.82, 0.78, 0.81, 0.80], trials=5),  # 0.800
    }
    se = np.std([0.80, 0.83, 0.78, 0.82, 0.81], ddof=1) / np.sqrt(5)  # 0.00860
    kwargs: dict[str, Any] = {
        "metric": "auc",
        "y_valid": np.zeros(0),
        "scheme": {"method": "stratified", "folds": 5},
        "seed": 0,
    }
    one_se = select_family(results, rule="one_se", **kwargs)
    assert one_se["families"]["lightgbm"]["se"] == pytest.approx(se)
    assert one_se["families"]["logistic"] == {
        "mean": pytest.approx(0.80),
        "se": pytest.approx(np.std([0.79, 0.82, 0.78, 0.81, 0.80], ddof=1) / np.sqrt(5)),
        "se_from": "folds",
        "folds": [0.79, 0.82, 0.78, 0.81, 0.80],
        "trials": 5,
    }
    assert (one_se["best_family"], one_se["chosen_family"]) == ("lightgbm", "logistic")
    assert one_se["runner_up"] == "lightgbm"
    assert one_se["margin"] == pytest.approx(0.800 - 0.808)
    assert (one_se["rule"], one_se["metric"], one_se["direction"]) == ("one_se", "auc", "maximize")
    best = select_family(results, rule="best", **kwargs)
    assert best["chosen_family"] == "lightgbm" and best["margin"] == pytest.approx(0.008)
    # A logistic mean more than one standard error below the best loses under one_se too.
    results["logistic"] = _result("logistic", [0.78, 0.81, 0.77, 0.80, 0.79])  # 0.790
    assert select_family(results, rule="one_se", **kwargs)["chosen_family"] == "lightgbm"


def test_one_se_for_log_loss_looks_for_means_within_one_error_above_the_lowest() -> None:
    kwargs: dict[str, Any] = {"metric": "log_loss", "y_valid": np.zeros(0), "scheme": {}, "seed": 0}
    near = {
        "logistic": _result("logistic", [0.46, 0.45, 0.47]),  # 0.46
        "lightgbm": _result("lightgbm", [0.42, 0.45, 0.48]),  # 0.45, se 0.0173
    }
    chosen = select_family(near, rule="one_se", **kwargs)
    assert (chosen["best_family"], chosen["chosen_family"]) == ("lightgbm", "logistic")
    assert chosen["direction"] == "minimize" and chosen["margin"] == pytest.approx(0.01)
    far = {**near, "logistic": _result("logistic", [0.49, 0.48, 0.50])}  # 0.49 > 0.45 + 0.0173
    assert select_family(far, rule="one_se", **kwargs)["chosen_family"] == "lightgbm"
    assert select_family(near, rule="best", **kwargs)["chosen_family"] == "lightgbm"


def test_one_family_is_chosen_with_no_runner_up_or_margin() -> None:
    alone = select_family(
        {"lightgbm": _result("lightgbm", [0.7, 0.8])},
        rule="one_se",
        metric="auc",
        y_valid=np.zeros(0),
        scheme={},
        seed=0,
    )
    assert alone["chosen_family"] == alone["best_family"] == "lightgbm"
    assert alone["runner_up"] is None and alone["margin"] is None


def test_single_split_standard_error_is_a_seeded_bootstrap_near_hanley_mcneil() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.3).astype(int)
    p = 1 / (1 + np.exp(-(1.2 * y + rng.normal(size=2000))))
    result = _result("logistic", [validation_score("auc", y, p)])
    result.predictions = [p]
    se = standard_error(result, y, "auc", seed=5)
    assert se == standard_error(result, y, "auc", seed=5)
    assert se != standard_error(result, y, "auc", seed=6)
    # Hanley & McNeil (1982): the textbook standard error of an AUC.
    a, n1, n0 = result.best_value, y.sum(), (1 - y).sum()
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    hanley = np.sqrt((a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a)) / (n1 * n0))
    assert abs(se / hanley - 1) < 4 / np.sqrt(BOOTSTRAP_ROUNDS)


def _rule_applied(selection: dict[str, Any]) -> str:
    """The one-standard-error rule, re-derived from the recorded means and errors."""
    families = selection["families"]
    best = max(families, key=lambda f: families[f]["mean"])
    floor = families[best]["mean"] - families[best]["se"]
    near = [f for f in families if families[f]["mean"] >= floor]
    return "logistic" if "logistic" in near else best


def test_the_selection_record_says_how_the_family_was_chosen_and_by_what_margin(
    small: tuple[pd.DataFrame, ProjectSpec, TrainingOutcome],
) -> None:
    _, spec, outcome = small
    selection = outcome.tuning_summary("auc")["selection"]
    assert selection["scheme"] == {"method": "stratified", "folds": AUTO_FOLDS}
    assert selection["rule"] == "one_se" and selection["metric"] == "auc"
    for family, result in outcome.results.items():
        record = selection["families"][family]
        assert record["mean"] == result.best_value
        assert record["folds"] == result.fold_values and record["se_from"] == "folds"
        assert record["se"] == pytest.approx(np.std(result.fold_values, ddof=1) / np.sqrt(5))
        assert record["trials"] == spec.tuning.trials
    assert selection["chosen_family"] == outcome.family == _rule_applied(selection)
    runner_up = next(f for f in outcome.results if f != outcome.family)
    assert selection["runner_up"] == runner_up
    assert selection["margin"] == pytest.approx(
        outcome.results[outcome.family].best_value - outcome.results[runner_up].best_value
    )
    assert outcome.model.family == outcome.family


def test_a_single_split_records_bootstrap_errors() -> None:
    frame, spec = _table(1000), _spec(folds=1, trials=2, selection="best")
    outcome = train_model(frame, spec)
    selection = outcome.selection
    assert selection["scheme"] == {"method": "stratified", "folds": 1}
    for family, result in outcome.results.items():
        record = selection["families"][family]
        assert record["se_from"] == "bootstrap" and record["folds"] == [result.best_value]
        assert 0.005 < record["se"] < 0.06
    means = {f: r["mean"] for f, r in selection["families"].items()}
    assert outcome.family == selection["best_family"] == max(means, key=means.__getitem__)


def test_time_split_folds_validate_later_than_they_train() -> None:
    frame = _table(1000, seed=2, days=100)
    spec = _spec(folds="auto", split={"method": "time"}, trials=2)
    outcome = train_model(frame, spec)
    assert outcome.selection["scheme"] == {"method": "time", "folds": AUTO_FOLDS}
    when = frame["when"]
    for train, valid in outcome.split.folds:
        assert when.iloc[train].max() < when.iloc[valid].min()
    assert when.iloc[outcome.split.train].max() < when.iloc[outcome.split.test].min()


def test_learning_curve_with_folds_scores_fold_one_rows_its_fits_never_saw(
    small: tuple[pd.DataFrame, ProjectSpec, TrainingOutcome],
) -> None:
    _, spec, _ = small
    logistic = train_model(_table(1000), _spec(families=("logistic",), trials=2))
    points = learning_curve(logistic, spec, shares=(0.5, 1.0))
    fold = logistic.folds[0]
    assert points[-1]["train_size"] == len(fold.y_train) < len(logistic.split.train)
    # The full share is fold 1's fit of the chosen parameters, scored on its held-out rows.
    assert points[-1]["validation_metric"] == logistic.results["logistic"].fold_values[0]


def test_training_with_folds_twice_gives_the_same_artifact_and_record(
    small: tuple[pd.DataFrame, ProjectSpec, TrainingOutcome],
) -> None:
    frame, spec, outcome = small
    again = train_model(frame, spec)
    assert again.model.files() == outcome.model.files()
    assert again.selection == outcome.selection


def test_folds_apply_to_a_time_zone_aware_time_column() -> None:
    frame = _table(600, seed=4, days=30)
    frame["when"] = frame["when"].dt.tz_localize("UTC")
    spec = _spec(folds=3, split={"method": "time"}, trials=1, families=("logistic",))
    outcome = train_model(frame, spec)
    assert len(outcome.folds) == 3
    when = frame["when"]
    for train, valid in outcome.split.folds:
        assert when.iloc[train].max() < when.iloc[valid].min()


def test_auto_folds_fall_back_to_one_split_when_a_fold_would_lack_a_class() -> None:
    """A time-ordered table whose positives all come late: "auto" asks for folds, but the early
    blocks hold no positive, so it keeps the single split that trains; a forced K refuses."""
    from keel.errors import TrainingError
    from keel.spec import SplitSpec

    rows = 400
    time = pd.Series(pd.date_range("2024-01-01", periods=rows, freq="h"))
    y = np.zeros(rows, dtype=int)
    y[[130, 200, 230, 250, 270, 300, 330, 360, 390]] = 1  # none in the first block
    spec = SplitSpec(method="time")
    single = split_rows(y, spec, seed=0, time=time, folds=1)
    auto = split_rows(y, spec, seed=0, time=time, folds="auto")
    assert auto.folds == () and np.array_equal(auto.validation, single.validation)
    with pytest.raises(TrainingError, match="fold .* holds one class only"):
        split_rows(y, spec, seed=0, time=time, folds=5)

    few = np.zeros(rows, dtype=int)
    few[[10, 100, 390]] = 1  # three positives cannot fill five stratified folds
    assert split_rows(few, SplitSpec(), seed=0, folds="auto").folds == ()
