"""Hyperparameter search per model family: Optuna TPE, seeded, with pruning.

Each trial fits on the training rows and is scored on the validation rows (or on each
fold's, by their mean); the test rows never reach this module. With a trial budget (and no
time budget) the search is fully reproducible: the same seed gives the same trials and the
same best model. This is the default; :mod:`keel.training.distributed` spreads the same
trials over Dask workers (faster, not reproducible trial for trial).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from keel.models.artifact import Scorer
from keel.models.gbdt import LightGBMScorer, fit_lightgbm, fit_lightgbm_rounds, lightgbm_params
from keel.models.logistic import fit_logistic
from keel.spec import FloatRange, IntRange, ProjectSpec

TrialCallback = Callable[[str, int, "float | None"], None]
_LIGHTGBM_METRIC = {
    "auc": "auc",
    "average_precision": "average_precision",
    "log_loss": "binary_logloss",
}


@dataclass(frozen=True)
class Matrices:
    """Preprocessed training and validation data, as the families read it."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_valid: np.ndarray
    y_valid: np.ndarray
    categorical: list[int]
    n_categories: dict[int, int]


@dataclass
class FamilyResult:
    """The outcome of tuning one family: its best model and every trial.

    ``fold_values`` and ``predictions`` belong to the best trial: its value and its scores
    on each fold's validation rows (one of each without folds), from models that never
    trained on those rows.
    """

    family: str
    best_value: float
    best_params: dict[str, Any]
    model: Scorer
    trials: list[dict[str, Any]] = field(default_factory=list)
    refit_rounds: int | None = None
    study: str | None = None  # its name in tuning.storage, when the trials ran on a cluster
    fold_values: list[float] = field(default_factory=list)
    predictions: list[np.ndarray] = field(default_factory=list)


@dataclass
class Candidate:
    """One fitted and scored candidate: its mean value, and each fold's value and scores."""

    value: float
    params: dict[str, Any]
    rounds: int | None
    model: Scorer  # the last fold's model (the only one without folds)
    fold_values: list[float]
    predictions: list[np.ndarray]


def validation_score(metric: str, y: np.ndarray, p: np.ndarray) -> float:
    """The tuning metric on validation rows (higher is better, except log loss)."""
    from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

    if metric == "auc":
        return float(roc_auc_score(y, p))
    if metric == "average_precision":
        return float(average_precision_score(y, p))
    return float(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1]))


def _suggest(trial: Any, name: str, space: FloatRange | IntRange) -> float | int:
    if isinstance(space, IntRange):
        return trial.suggest_int(name, space.low, space.high)
    return trial.suggest_float(name, space.low, space.high, log=space.log)


def sample_params(trial: Any, family: str, spec: ProjectSpec) -> dict[str, Any]:
    """Draw one point of the family's search space from the spec."""
    if family == "logistic":
        logistic = spec.models.logistic
        return {"C": _suggest(trial, "C", logistic.C), "max_iter": logistic.max_iter}
    space = spec.models.lightgbm
    names = (
        "num_leaves",
        "learning_rate",
        "min_child_samples",
        "feature_fraction",
        "bagging_fraction",
        "lambda_l2",
    )
    return {name: _suggest(trial, name, getattr(space, name)) for name in names}


def full_lightgbm_params(
    params: dict[str, Any], spec: ProjectSpec, *, features: list[str]
) -> dict[str, Any]:
    """Tuned LightGBM parameters completed from the spec.

    The spec gives the metric, bins, seed, threads and monotone constraints.
    """
    space = spec.models.lightgbm
    return lightgbm_params(
        {**params, "metric": _LIGHTGBM_METRIC[spec.tuning.metric], "max_bin": space.max_bin},
        seed=spec.seed,
        threads=spec.tuning.threads,
        monotone=[space.monotone.get(f, 0) for f in features],
    )


def fit_family(
    family: str,
    params: dict[str, Any],
    data: Matrices,
    spec: ProjectSpec,
    *,
    features: list[str],
    callbacks: tuple[Callable[..., None], ...] = (),
    rounds: int | None = None,
) -> Scorer:
    """Fit one family with fixed parameters on the training rows.

    Boosting stops early on the validation rows, or runs exactly ``rounds`` when given.
    """
    if family == "logistic":
        return fit_logistic(
            data.X_train,
            data.y_train,
            params=params,
            n_categories=data.n_categories,
            seed=spec.seed,
        )
    space = spec.models.lightgbm
    full = full_lightgbm_params(params, spec, features=features)
    if rounds is not None:
        return fit_lightgbm_rounds(
            data.X_train, data.y_train, params=full, categorical=data.categorical, rounds=rounds
        )
    return fit_lightgbm(
        data.X_train,
        data.y_train,
        data.X_valid,
        data.y_valid,
        params=full,
        categorical=data.categorical,
        max_rounds=space.max_rounds,
        early_stopping_rounds=space.early_stopping_rounds,
        callbacks=callbacks,
    )


def _pruning_callback(trial: Any, metric: str) -> Callable[..., None]:
    import optuna

    name = _LIGHTGBM_METRIC[metric]

    def callback(env: Any) -> None:
        if env.iteration % 10:
            return
        for _, eval_name, value, _ in env.evaluation_result_list:
            if eval_name == name:
                trial.report(value, env.iteration)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at iteration {env.iteration}")

    return callback


def make_pruner(family: str, spec: ProjectSpec) -> Any:
    """Median pruning of LightGBM trials when the spec asks for it; no pruning otherwise."""
    import optuna

    if spec.tuning.pruning and family == "lightgbm":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=30)
    return optuna.pruners.NopPruner()


def score_candidate(
    family: str,
    params: dict[str, Any],
    data: Matrices,
    spec: ProjectSpec,
    *,
    features: list[str],
    folds: Sequence[Matrices] = (),
    callbacks: tuple[Callable[..., None], ...] = (),
) -> tuple[Candidate, list[int]]:
    """Fit fixed parameters on each fold (or on ``data``) and score each on its validation rows.

    ``callbacks`` (pruning) watch the first fit only. Also returns each fit's boosting rounds.
    """
    metric = spec.tuning.metric
    values, predictions, rounds, model = [], [], [], None
    for k, fold in enumerate(folds or [data]):
        model = fit_family(
            family, params, fold, spec, features=features, callbacks=callbacks if k == 0 else ()
        )
        p = model.probability(fold.X_valid)
        values.append(validation_score(metric, fold.y_valid, p))
        predictions.append(p)
        if isinstance(model, LightGBMScorer):  # family "lightgbm"
            rounds.append(int(model.booster.current_iteration()))
    assert model is not None  # `folds or [data]` holds at least one set to fit
    mean = float(np.mean(values))
    return Candidate(mean, params, mean_rounds(rounds), model, values, predictions), rounds


def run_trial(
    trial: Any,
    family: str,
    data: Matrices,
    spec: ProjectSpec,
    *,
    features: list[str],
    folds: Sequence[Matrices] = (),
) -> Candidate:
    """Sample, fit and score one candidate (mean over ``folds`` when given).

    The rounds (and each fold's value) are kept on the trial as user attributes.
    """
    params = sample_params(trial, family, spec)
    callbacks = (
        (_pruning_callback(trial, spec.tuning.metric),)
        if family == "lightgbm" and spec.tuning.pruning
        else ()
    )
    candidate, rounds = score_candidate(
        family, params, data, spec, features=features, folds=folds, callbacks=callbacks
    )
    if family == "lightgbm":
        trial.set_user_attr("rounds", rounds[0] if len(rounds) == 1 else rounds)
    if len(candidate.fold_values) > 1:
        trial.set_user_attr("fold_values", [round(v, 6) for v in candidate.fold_values])
    return candidate


def mean_rounds(rounds: int | list[int] | None) -> int | None:
    """The rounds a refit runs: the mean over folds of a trial's early-stopped rounds.

    None: not boosting.
    """
    if rounds is None or (isinstance(rounds, list) and not rounds):
        return None
    return round(float(np.mean(rounds)))


def trial_rows(family: str, study: Any) -> list[dict[str, Any]]:
    """Every trial of ``study`` as a plain record for logs and the model card.

    On a cluster, each record names its worker.
    """
    rows = []
    for t in study.trials:
        attrs = dict(t.user_attrs)
        worker = attrs.pop("worker", None)
        rows.append(
            {
                "family": family,
                "number": t.number,
                "value": t.value,
                "state": t.state.name.lower(),
                "params": {**t.params, **attrs},
                "seconds": round(t.duration.total_seconds(), 3) if t.duration else None,
                **({"worker": worker} if worker else {}),
            }
        )
    return rows


def tune_family(
    family: str,
    data: Matrices,
    spec: ProjectSpec,
    *,
    features: list[str],
    on_trial: TrialCallback | None = None,
    folds: Sequence[Matrices] = (),
) -> FamilyResult:
    """Search the family's space within the spec's budget; returns the best model found.

    With ``folds``, a candidate's value is its mean over the folds (each fit on its own
    training rows, stopped early on its validation rows), and the chosen parameters are
    refit on ``data``'s training rows for the folds' mean number of rounds.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tuning = spec.tuning
    maximize = tuning.maximize
    study = optuna.create_study(
        direction="maximize" if maximize else "minimize",
        sampler=optuna.samplers.TPESampler(seed=spec.seed),
        pruner=make_pruner(family, spec),
        study_name=f"{spec.project}-{family}",
    )
    best: list[Candidate] = []

    def objective(trial: optuna.Trial) -> float:
        candidate = run_trial(trial, family, data, spec, features=features, folds=folds)
        value = candidate.value
        if not best or (value > best[0].value if maximize else value < best[0].value):
            best[:] = [candidate]
        return value

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if on_trial is not None:
            on_trial(family, trial.number, trial.value)

    study.optimize(
        objective, n_trials=tuning.trials, timeout=tuning.timeout_seconds, callbacks=[report]
    )
    if not best:
        raise_no_trial(family, study)
    chosen = best[0]
    model = (
        fit_family(family, chosen.params, data, spec, features=features, rounds=chosen.rounds)
        if folds
        else chosen.model
    )
    return FamilyResult(
        family,
        float(chosen.value),
        dict(chosen.params),
        model,
        trial_rows(family, study),
        refit_rounds=chosen.rounds if folds else None,
        fold_values=list(chosen.fold_values),
        predictions=list(chosen.predictions),
    )


def raise_no_trial(family: str, study: Any) -> None:
    """No trial completed: say how many were pruned or failed."""
    from keel.errors import TrainingError

    states = [t.state.name.lower() for t in study.trials]
    raise TrainingError(
        f"tuning '{family}' completed no trial ({len(states)} started: {states}); "
        "raise tuning.trials or tuning.timeout_seconds"
    )
