"""Tuning on a Dask cluster: Optuna trials spread over the workers, and an opt-in parallel fit.

**Trials.** The study lives in an RDB storage that this process and every worker reach:
``tuning.storage`` when the spec names one, else, for a ``LocalCluster`` this process
started, a SQLite file in a temporary folder (removed afterwards). A remote cluster without
``tuning.storage`` is refused before anything is read or run (:func:`check_cluster_tuning`).
The training, validation and fold matrices are scattered once to every worker; one task
per worker runs ``study.optimize`` for its share of ``tuning.trials`` (each within
``timeout_seconds``) with its own TPE sampler, seeded ``seed + worker index`` (Optuna's
constant liar counts running trials as bad, so workers do not all probe one point), and
LightGBM on the worker's Dask threads. ``on_trial`` hears of trials as they finish, read
from the storage. The best trial's parameters are then refit in this process exactly as
in-process tuning refits them: same code, same pickle-free artifact. Each study keeps a
fresh name (``<project>-<family>-<random>``, in the run's ``tuning/trials.json``), so a
shared database collects one study per run and never mixes two.

**Where local and distributed agree, and where they cannot.**

- A trial's value does not depend on where it ran (same matrices; LightGBM deterministic,
  column-wise histograms), so the refit here reproduces the best trial's model.
- The search does: parallel TPE samples from a different history (which trials have
  finished when a worker asks depends on timing), so the trials and the best one differ
  from the in-process search, and between two cluster runs. The best value lands close
  to the in-process one (same space and budget), not on it. (During TPE's random startup
  trials, worker 0, seeded like the in-process sampler, draws the in-process search's
  first points; the others draw new ones.) In-process tuning stays the reproducible default.
- ``models.lightgbm.distributed_fit`` fits the chosen parameters data-parallel over the
  workers (:mod:`keel.models.gbdt_dask`) for the tuned rounds (the folds' mean, or the
  best trial's early-stopped rounds). Its trees differ from an in-process fit of the same
  parameters, mostly in the last bits, sometimes in a split: each feature's bin
  boundaries are found by one worker from its own rows (not from all rows), histograms
  are summed over the network, bagging draws rows per worker, and monotone constraints
  fall back to LightGBM's ``basic`` method (``intermediate`` and ``advanced`` are not
  distributed). Held-out AUC agrees closely (the tests require 0.005). lightgbm.dask
  ranks the workers by where Dask reports their rows, an order that can change between
  runs, so two distributed fits of the same data can also differ from each other.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from keel.engine import Engine
from keel.errors import EngineError, SpecError, TrainingError
from keel.models.artifact import Scorer
from keel.models.gbdt_dask import fit_lightgbm_dask
from keel.spec import ProjectSpec
from keel.training.tuning import (
    FamilyResult,
    Matrices,
    TrialCallback,
    fit_family,
    full_lightgbm_params,
    make_pruner,
    mean_rounds,
    raise_no_trial,
    run_trial,
    sample_params,
    score_candidate,
    trial_rows,
)

_POLL_SECONDS = 0.5


def check_cluster_tuning(spec: ProjectSpec, engine: Engine | None) -> None:
    """Refuse a remote cluster when the spec names no study database every worker can reach."""
    if engine is None or not engine.distributed or engine.local:
        return
    storage = spec.tuning.storage
    if storage and storage.startswith("sqlite"):
        raise SpecError(
            f"tuning.storage: '{storage}' is a file on this machine, "
            "which the workers of the cluster at "
            f"{engine.address} cannot share safely; use a database server such as "
            "postgresql+psycopg2://user@host/optuna, or --cluster local"
        )
    if storage:
        return
    raise SpecError(
        f"tuning.storage: tuning on the cluster at {engine.address} "
        "needs a study database that this machine "
        "and every worker reach, and the spec names none; set tuning.storage to a URL such as "
        "postgresql+psycopg2://user@host/optuna, or use --cluster local, "
        "or leave --cluster out to tune in process"
    )


def tune_on_cluster(
    data: Matrices,
    spec: ProjectSpec,
    *,
    engine: Engine,
    features: list[str],
    folds: Sequence[Matrices] = (),
    on_trial: TrialCallback | None = None,
) -> dict[str, FamilyResult]:
    """Tune every family of the spec with its trials spread over the engine's workers.

    See the module docstring.
    """
    check_cluster_tuning(spec, engine)
    client = engine.client
    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    if not workers:
        raise EngineError(
            f"the cluster at {engine.address} has no workers to run tuning trials on; start some"
        )
    matrices = client.scatter(
        [data, *folds], broadcast=True, hash=False
    )  # fresh keys, as in gbdt_dask
    with _study_storage(spec) as url:
        return {
            family: _tune_family(
                family,
                data,
                spec,
                engine=engine,
                url=url,
                workers=workers,
                matrices=matrices,
                folds=folds,
                features=features,
                on_trial=on_trial,
            )
            for family in spec.models.families
        }


def open_storage(url: str) -> Any:
    """Optuna's RDB storage at ``url``.

    SQLite waits for its write lock rather than failing at once.
    """
    from optuna.storages import RDBStorage

    return RDBStorage(
        url, engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    )


def _close(storage: Any) -> None:
    storage.remove_session()
    storage.engine.dispose()


@contextmanager
def _study_storage(spec: ProjectSpec) -> Iterator[str]:
    """The spec's study database, or a SQLite file in a temporary folder.

    The SQLite file is for a LocalCluster only (checked before).
    """
    if spec.tuning.storage:
        yield spec.tuning.storage
        return
    with tempfile.TemporaryDirectory(prefix="keel-tuning-") as folder:
        yield f"sqlite:///{Path(folder) / 'optuna.db'}"


def _tune_family(
    family: str,
    data: Matrices,
    spec: ProjectSpec,
    *,
    engine: Engine,
    url: str,
    workers: list[str],
    matrices: list[Any],
    folds: Sequence[Matrices],
    features: list[str],
    on_trial: TrialCallback | None,
) -> FamilyResult:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url)
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=f"{spec.project}-{family}-{uuid.uuid4().hex[:12]}",
            direction="maximize" if spec.tuning.maximize else "minimize",
        )
        shares = [len(range(i, spec.tuning.trials, len(workers))) for i in range(len(workers))]
        futures = [
            engine.client.submit(
                _worker_trials,
                study.study_name,
                url,
                family,
                spec,
                features,
                share,
                spec.seed + i,
                matrices[0],
                matrices[1:],
                workers=[worker],
                allow_other_workers=True,
                pure=False,
            )
            for i, (worker, share) in enumerate(zip(workers, shares, strict=True))
            if share
        ]
        _follow(study, futures, family, on_trial)
        engine.client.gather(futures)  # a worker's error surfaces here, as itself
        return _refit_best(study, family, data, spec, engine=engine, features=features, folds=folds)
    finally:
        _close(storage)


def _worker_trials(
    study_name: str,
    url: str,
    family: str,
    spec: ProjectSpec,
    features: list[str],
    trials: int,
    seed: int,
    data: Matrices,
    folds: list[Matrices],
) -> None:
    """On a worker: run ``trials`` trials of the stored study, LightGBM on this worker's threads."""
    import optuna
    from distributed import get_worker

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    worker = get_worker()
    spec = spec.model_copy(
        update={"tuning": spec.tuning.model_copy(update={"threads": worker.state.nthreads})}
    )
    storage = open_storage(url)
    try:
        study = optuna.load_study(
            study_name=study_name,
            storage=storage,
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=make_pruner(family, spec),
        )

        def objective(trial: optuna.Trial) -> float:
            trial.set_user_attr("worker", worker.address)
            return run_trial(trial, family, data, spec, features=features, folds=folds).value

        study.optimize(objective, n_trials=trials, timeout=spec.tuning.timeout_seconds)
    finally:
        _close(storage)


def _follow(study: Any, futures: list[Any], family: str, on_trial: TrialCallback | None) -> None:
    """Wait for the workers, telling ``on_trial`` of each trial once it has finished."""
    from distributed import wait
    from optuna.trial import TrialState

    reported: set[int] = set()
    done = False
    while not done:
        try:
            wait(futures, timeout=_POLL_SECONDS)
            done = True
        except TimeoutError:
            pass
        if on_trial is None:
            continue
        for trial in study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        ):
            if trial.number not in reported:
                reported.add(trial.number)
                on_trial(family, trial.number, trial.value)


def _refit_best(
    study: Any,
    family: str,
    data: Matrices,
    spec: ProjectSpec,
    *,
    engine: Engine,
    features: list[str],
    folds: Sequence[Matrices],
) -> FamilyResult:
    """Refit the best trial's parameters as in-process tuning does.

    The fit is data-parallel when the spec asks. With folds, the best parameters are fitted
    on each fold again (here, reproducing the trial) for their out-of-fold scores.
    """
    import optuna

    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        raise_no_trial(family, study)
    best = study.best_trial
    params = sample_params(optuna.trial.FixedTrial(best.params), family, spec)
    rounds = mean_rounds(best.user_attrs.get("rounds"))
    model: Scorer
    refit_rounds: int | None
    if family == "lightgbm" and spec.models.lightgbm.distributed_fit:
        if rounds is None:  # every LightGBM trial records its rounds (run_trial)
            raise TrainingError(f"the best {family} trial recorded no boosting rounds to refit")
        model = fit_lightgbm_dask(
            engine.client,
            data.X_train,
            data.y_train,
            categorical=data.categorical,
            params=full_lightgbm_params(params, spec, features=features),
            rounds=rounds,
        )
        refit_rounds = rounds
    else:
        refit_rounds = rounds if folds else None
        model = fit_family(family, params, data, spec, features=features, rounds=refit_rounds)
    if folds:
        scored = score_candidate(family, params, data, spec, features=features, folds=folds)[0]
        values, predictions = scored.fold_values, scored.predictions
    else:
        values, predictions = [float(best.value)], [model.probability(data.X_valid)]
    return FamilyResult(
        family,
        float(best.value),
        params,
        model,
        trial_rows(family, study),
        refit_rounds=refit_rounds,
        study=study.study_name,
        fold_values=values,
        predictions=predictions,
    )
