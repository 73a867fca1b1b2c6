"""Tests for keel.training.distributed: Optuna trials on Dask workers and the lightgbm.dask fit.

Where local and distributed agree, and where they cannot (the module doc says why):

- a trial's value does not depend on the worker that ran it, so the refit in this process
  reproduces the best trial's validation value exactly;
- the search does not reproduce: parallel TPE samples from another history, so its best
  value is only close to the in-process search's (here within 0.01 AUC, on 1,200
  validation rows);
- the data-parallel fit has other bin boundaries (found per worker), histograms summed over
  the network and bagging per worker, so its trees differ from the local fit: only their
  held-out AUC is compared (within 0.005, on 1,200 test rows).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from keel.engine import Engine
from keel.errors import SpecError
from keel.lifecycle.run import run_project
from keel.models.artifact import KeelModel
from keel.models.gbdt import LightGBMScorer
from keel.spec import ProjectSpec, parse_spec
from keel.training.distributed import open_storage
from keel.training.trainer import TrainingOutcome, train_model
from keel.training.tuning import fit_family, validation_score

from factories import loans_spec, make_loans

TRIALS = 8
REMOTE = "tcp://10.0.0.5:8786"  # an address nothing listens on: only its name says "remote"
# Slow, regularized boosting: tens of rounds or more, where bin boundaries move AUC least.
SPACE = {
    "max_rounds": 500,
    "early_stopping_rounds": 30,
    "learning_rate": {"low": 0.03, "high": 0.06, "log": True},
    "num_leaves": {"low": 8, "high": 16},
    "min_child_samples": {"low": 30, "high": 80},
}


def _spec(
    source: str = "unused.csv",
    *,
    families: tuple[str, ...] = ("lightgbm",),
    distributed_fit: bool = False,
    **tuning: Any,
) -> ProjectSpec:
    return parse_spec(
        loans_spec(
            source,
            models={
                "families": list(families),
                "lightgbm": {**SPACE, "distributed_fit": distributed_fit},
            },
            tuning={"trials": TRIALS, "threads": 1, **tuning},
        )
    )


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_loans(6000, seed=3)


@pytest.fixture(scope="module")
def on_cluster(
    frame: pd.DataFrame, dask_engine: Engine
) -> tuple[TrainingOutcome, list[tuple[str, int, Any]]]:
    heard: list[tuple[str, int, Any]] = []
    outcome = train_model(
        frame, _spec(), engine=dask_engine, on_trial=lambda *trial: heard.append(trial)
    )
    return outcome, heard


def test_trials_spread_over_the_workers_and_find_a_model_close_to_in_process(
    frame: pd.DataFrame,
    on_cluster: tuple[TrainingOutcome, list[tuple[str, int, Any]]],
    dask_engine: Engine,
) -> None:
    outcome, heard = on_cluster
    result = outcome.results["lightgbm"]
    assert [t["number"] for t in result.trials] == list(range(TRIALS))
    assert sorted(n for _, n, _ in heard) == list(
        range(TRIALS)
    )  # each reported once, as it finished
    per_worker = Counter(t["worker"] for t in result.trials)
    assert set(per_worker) == set(dask_engine.client.scheduler_info(n_workers=-1)["workers"])
    assert sorted(per_worker.values()) == [TRIALS // 2, TRIALS // 2]
    data = outcome.matrices
    assert (
        validation_score("auc", data.y_valid, result.model.probability(data.X_valid))
        == result.best_value
    )
    assert outcome.tuning_summary("auc")["studies"] == {"lightgbm": result.study}

    local = train_model(frame, _spec()).results["lightgbm"]
    assert len(local.trials) == TRIALS and local.study is None
    assert abs(result.best_value - local.best_value) < 0.01


def test_distributed_fit_agrees_with_the_local_fit_and_stores_the_same_artifact(
    frame: pd.DataFrame,
    dask_engine: Engine,
    tmp_path: Path,
) -> None:
    outcome = train_model(frame, _spec(distributed_fit=True, trials=1), engine=dask_engine)
    result, data = outcome.results["lightgbm"], outcome.matrices
    text = result.model.to_bytes().decode()
    assert "[tree_learner: data]" in text and "[num_machines: 2]" in text
    assert (
        "[machines: " not in text and "[local_listen_port: " not in text
    )  # this fit's ports are not kept
    assert (
        result.refit_rounds
        == result.trials[0]["params"]["rounds"]
        == result.model.booster.current_iteration()
    )
    local = fit_family(
        "lightgbm",
        result.best_params,
        data,
        _spec(),
        features=outcome.model.features,
        rounds=result.refit_rounds,
    )
    distributed_auc = validation_score(
        "auc", outcome.y_test, result.model.probability(outcome.X_test)
    )
    local_auc = validation_score("auc", outcome.y_test, local.probability(outcome.X_test))
    assert abs(distributed_auc - local_auc) < 0.005

    fingerprint = outcome.model.save(tmp_path / "model")
    loaded = KeelModel.load(tmp_path / "model", expected_sha256=fingerprint)
    assert (
        isinstance(loaded.scorer, LightGBMScorer)
        and loaded.scorer.to_bytes() == result.model.to_bytes()
    )
    rows = frame.iloc[outcome.split.test]
    assert np.array_equal(loaded.predict_proba(rows), outcome.model.predict_proba(rows))


def test_a_remote_cluster_without_a_study_database_is_refused_before_any_work(
    frame: pd.DataFrame,
    dask_engine: Engine,
    tmp_path: Path,
) -> None:
    remote = Engine(dask_engine.client, REMOTE)
    heard: list[Any] = []
    message = (
        rf"tuning\.storage: tuning on the cluster at {REMOTE} needs a study database "
        r".* set tuning\.storage"
    )
    with pytest.raises(SpecError, match=message):
        train_model(frame, _spec(), engine=remote, on_trial=lambda *trial: heard.append(trial))
    assert heard == []
    with pytest.raises(SpecError, match=message):  # not a DataError: the missing file is never read
        run_project(
            _spec(str(tmp_path / "missing.csv")), project_dir=tmp_path / ".keel", engine=remote
        )
    assert not (tmp_path / ".keel").exists()


def test_a_cluster_tunes_in_the_study_database_the_spec_names(
    frame: pd.DataFrame,
    dask_engine: Engine,
    database_url: str,
) -> None:
    url = database_url  # a SQLite file, or a database on a real PostgreSQL server
    spec = _spec(families=("logistic",), trials=3, storage=url)
    if url.startswith("sqlite"):  # a file here is not shared by a remote cluster's workers
        with pytest.raises(SpecError, match="cannot share safely"):
            train_model(frame, spec, engine=Engine(dask_engine.client, REMOTE))
        return
    result = train_model(frame, spec, engine=Engine(dask_engine.client, REMOTE)).results["logistic"]
    storage = open_storage(url)
    try:
        import optuna

        study = optuna.load_study(study_name=result.study, storage=storage)
        assert [t.value for t in study.trials] == [t["value"] for t in result.trials]
        assert result.best_params == {
            "C": study.best_params["C"],
            "max_iter": spec.models.logistic.max_iter,
        }
    finally:
        storage.engine.dispose()


def test_cluster_tuning_with_folds_records_the_same_selection_as_in_process(
    dask_engine: Engine,
) -> None:
    """Folds on a cluster: the same selection record, and out-of-fold scores that reproduce it.

    The record's keys and fold layout match in-process tuning's; its values follow the
    cluster's own (parallel) search.
    """
    frame = make_loans(1500, seed=4)
    spec = _spec(families=("logistic", "lightgbm"), trials=4, folds=3)
    on_cluster = train_model(frame, spec, engine=dask_engine)
    local = train_model(frame, spec)
    remote, here = on_cluster.tuning_summary("auc"), local.tuning_summary("auc")
    assert set(remote["selection"]) == set(here["selection"])
    assert (
        remote["selection"]["scheme"]
        == here["selection"]["scheme"]
        == {
            "method": "stratified",
            "folds": 3,
        }
    )
    for family, record in remote["selection"]["families"].items():
        assert set(record) == set(here["selection"]["families"][family])
        result = on_cluster.results[family]
        best = next(t for t in result.trials if t["value"] == result.best_value)
        # The folds refitted here reproduce the best trial's values from the workers.
        assert record["folds"] == pytest.approx(best["params"]["fold_values"], abs=1e-6)
        assert record["se_from"] == "folds" and len(result.predictions) == 3
    y, p = on_cluster.validation_predictions()
    assert len(y) == len(p) == len(on_cluster.split.train)
    assert on_cluster.family == remote["selection"]["chosen_family"]
