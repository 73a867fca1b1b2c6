"""Train a project's model: split, preprocess, tune each family, choose one on validation.

A plain function over a clean, contract-typed frame; it reads and writes nothing. Given a
Dask engine, the tuning trials run on its workers (:mod:`keel.training.distributed`).

**Choosing the family** (``tuning.selection``). Each family's best candidate has a mean
over the folds (or its value on the single validation split) and a standard error: over
the folds, their standard deviation over the square root of their number; on a single
split, the standard deviation of the value over :data:`BOOTSTRAP_ROUNDS` seeded,
class-stratified resamples of the validation rows. ``"best"`` takes the best mean;
``"one_se"`` takes the simplest family (:data:`SIMPLER_FIRST`) whose mean lies within one
standard error of the best family's mean (the best family's standard error; log loss is
minimized, every other metric maximized).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from keel.engine import Engine
from keel.errors import TrainingError
from keel.features.cleaning import target_vector
from keel.features.online import serving_features
from keel.models.artifact import KeelModel, Scorer
from keel.models.gbdt import LightGBMScorer
from keel.models.preprocess import Preprocessor
from keel.monitoring.reference import model_baseline
from keel.spec import ProjectSpec
from keel.training.distributed import check_cluster_tuning, tune_on_cluster
from keel.training.split import Split, split_rows
from keel.training.tuning import (
    FamilyResult,
    Matrices,
    TrialCallback,
    fit_family,
    tune_family,
    validation_score,
)

BOOTSTRAP_ROUNDS = 200
# Families from simplest to richest; one_se prefers the first. Families not listed come
# after these, in the spec's order.
SIMPLER_FIRST = ("logistic", "scorecard", "lightgbm")


@dataclass
class TrainingOutcome:
    """The chosen model, how it was chosen, and the data it was judged on."""

    model: KeelModel
    family: str
    params: dict[str, Any]
    results: dict[str, FamilyResult]
    split: Split
    matrices: Matrices
    X_test: np.ndarray
    y_test: np.ndarray
    folds: tuple[Matrices, ...] = ()
    selection: dict[str, Any] = field(default_factory=dict)

    def validation_predictions(self) -> tuple[np.ndarray, np.ndarray]:
        """Validation labels and the chosen model's scores, from fits that never saw those rows.

        With folds: the chosen family's best candidate, each fold's model on its own
        validation rows (fold by fold). Without: that candidate, fit on the train rows, on
        the validation rows (the final model may have been refit on them: ``tuning.refit``).
        """
        folds = self.folds or (self.matrices,)
        labels = np.concatenate([fold.y_valid for fold in folds])
        return labels, np.concatenate(self.results[self.family].predictions)

    def final_matrices(self) -> Matrices:
        """The rows the final model was fit on: with ``tuning.refit`` "pool" after a single
        split, the train and validation rows together; else the train rows."""
        return pooled(self.matrices) if "refit" in self.selection else self.matrices

    def tuning_summary(self, metric: str) -> dict[str, Any]:
        """Per-family best values, the chosen family and every trial, for logs and the card.

        ``selection`` says how the family was chosen (:func:`select_family`).
        """
        studies = {f: r.study for f, r in self.results.items() if r.study}
        return {
            "metric": metric,
            "chosen_family": self.family,
            "best": {f: r.best_value for f, r in self.results.items()},
            "trials": [t for r in self.results.values() for t in r.trials],
            **({"selection": self.selection} if self.selection else {}),
            **({"studies": studies} if studies else {}),
        }


def standard_error(result: FamilyResult, y_valid: np.ndarray, metric: str, *, seed: int) -> float:
    """The standard error of a family's validation mean: over its folds, or by bootstrap.

    The bootstrap (single split) resamples the validation rows ``y_valid`` within each class.
    """
    values = result.fold_values
    if len(values) > 1:
        return float(np.std(values, ddof=1) / np.sqrt(len(values)))
    p = result.predictions[0]
    rng = np.random.default_rng(seed)
    positive, negative = np.flatnonzero(y_valid == 1), np.flatnonzero(y_valid != 1)
    draws = []
    for _ in range(BOOTSTRAP_ROUNDS):
        rows = np.concatenate(
            [rng.choice(positive, positive.size), rng.choice(negative, negative.size)]
        )
        draws.append(validation_score(metric, y_valid[rows], p[rows]))
    return float(np.std(draws, ddof=1))


def select_family(
    results: dict[str, FamilyResult],
    *,
    metric: str,
    rule: str,
    y_valid: np.ndarray,
    scheme: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """Choose a family by ``rule`` ("one_se" or "best") and record how and by what margin.

    ``y_valid``: the single split's validation labels (for the bootstrap; unused with
    folds). ``margin``: the chosen family's mean minus the best other family's (None
    with one family).
    """
    maximize = metric != "log_loss"
    sign = 1.0 if maximize else -1.0
    mean = {family: float(result.best_value) for family, result in results.items()}
    se = {f: standard_error(r, y_valid, metric, seed=seed) for f, r in results.items()}
    order = list(results)

    def better(family: str) -> tuple[float, int]:
        return (-sign * mean[family], order.index(family))

    best = min(order, key=better)
    chosen = best
    if rule == "one_se":
        near = [f for f in order if sign * mean[f] >= sign * mean[best] - se[best]]
        rank = {f: (SIMPLER_FIRST + tuple(order)).index(f) for f in near}
        chosen = min(near, key=lambda f: (rank[f], better(f)))
    others = sorted((f for f in order if f != chosen), key=better)
    runner_up = others[0] if others else None
    return {
        "rule": rule,
        "metric": metric,
        "direction": "maximize" if maximize else "minimize",
        "scheme": scheme,
        "families": {
            family: {
                "mean": mean[family],
                "se": se[family],
                "se_from": "folds" if len(result.fold_values) > 1 else "bootstrap",
                "folds": [float(v) for v in result.fold_values],
                "trials": len(result.trials),
            }
            for family, result in results.items()
        },
        "best_family": best,
        "chosen_family": chosen,
        "runner_up": runner_up,
        "margin": mean[chosen] - mean[runner_up] if runner_up else None,
    }


def _matrices(
    frame: pd.DataFrame,
    y: np.ndarray,
    train_rows: np.ndarray,
    valid_rows: np.ndarray,
    pre: Preprocessor,
) -> Matrices:
    train = frame.iloc[train_rows]
    pre.fit(train)
    n_categories = {j: len(pre.categories_[pre.features[j]]) for j in pre.categorical_indices()}
    return Matrices(
        X_train=pre.transform(train),
        y_train=y[train_rows],
        X_valid=pre.transform(frame.iloc[valid_rows]),
        y_valid=y[valid_rows],
        categorical=pre.categorical_indices(),
        n_categories=n_categories,
    )


def train_model(
    frame: pd.DataFrame,
    spec: ProjectSpec,
    *,
    on_trial: TrialCallback | None = None,
    metadata: dict[str, Any] | None = None,
    engine: Engine | None = None,
) -> TrainingOutcome:
    """Tune every family in the spec and return the one ``tuning.selection`` chooses.

    Candidates are scored on the validation rows, or by their mean over the folds
    (``tuning.folds``, or the delayed split's own), and the chosen parameters refitted on
    the train rows. With a distributed ``engine`` the trials run on its workers; by default
    they run here.
    """
    check_cluster_tuning(spec, engine)
    features = spec.model_features()
    if not features:
        raise TrainingError(
            "no feature columns remain after removing target, id, time, protected "
            "and excluded columns"
        )
    y = target_vector(frame, spec).to_numpy()
    time = frame[spec.data.time_column] if spec.data.time_column else None
    entity = frame[spec.split.known_entity] if spec.split.known_entity else None
    split = split_rows(
        y, spec.split, seed=spec.seed, time=time, entity=entity, folds=spec.tuning.folds
    )
    categorical = [c for c in features if c in spec.features.categorical]

    def preprocessor() -> Preprocessor:
        return Preprocessor(features, categorical, dict(spec.features.derived))

    pre = preprocessor()
    data = _matrices(frame, y, split.train, split.validation, pre)
    X_test = pre.transform(frame.iloc[split.test])
    folds = [_matrices(frame, y, train, valid, preprocessor()) for train, valid in split.folds]
    if engine is not None and engine.distributed:
        results = tune_on_cluster(
            data, spec, engine=engine, features=features, folds=folds, on_trial=on_trial
        )
    else:
        results = {
            family: tune_family(
                family, data, spec, features=features, on_trial=on_trial, folds=folds
            )
            for family in spec.models.families
        }
    selection = select_family(
        results,
        metric=spec.tuning.metric,
        rule=spec.tuning.selection,
        y_valid=data.y_valid,
        scheme={"method": spec.split.method, "folds": max(len(split.folds), 1)},
        seed=spec.seed,
    )
    chosen = results[selection["chosen_family"]]
    scorer = chosen.model
    # A model fit for fixed rounds (K folds, or a distributed fit) was already final.
    if spec.tuning.refit == "pool" and not split.folds and chosen.refit_rounds is None:
        scorer, selection["refit"] = _refit_on_pool(data, chosen, spec, features)
    model = KeelModel(
        preprocessor=pre,
        scorer=scorer,
        target=spec.target.column,
        positive=spec.target.positive,
        threshold=spec.target.threshold,
        metadata={
            "project": spec.project,
            "seed": spec.seed,
            "params": chosen.best_params,
            **({"refit_rounds": chosen.refit_rounds} if chosen.refit_rounds is not None else {}),
            "contract": {
                c: spec.input_contract(c).model_dump(exclude_none=True) for c in pre.inputs()
            },
            **({"features": described} if (described := serving_features(spec)) else {}),
            **(metadata or {}),
        },
        reason_texts=spec.reason_texts(),
        top_k=spec.reasons.top_k,
    )
    model.metadata["monitoring"] = model_baseline(
        frame.iloc[split.train][pre.inputs()],
        categorical,
        model.scorer.probability(X_test),
        y[split.test],
        spec.target.threshold,
    )
    return TrainingOutcome(
        model,
        chosen.family,
        chosen.best_params,
        results,
        split,
        data,
        X_test,
        y[split.test],
        tuple(folds),
        selection,
    )


def _refit_on_pool(
    data: Matrices, chosen: FamilyResult, spec: ProjectSpec, features: list[str]
) -> tuple[Scorer, dict[str, Any]]:
    """Fit the chosen candidate again on the train and validation rows together.

    The rows keep the preprocessing learned on the train rows (a category seen only in the
    validation rows reads as unseen, as it would in serving); boosting runs the rounds that
    early stopping chose on the validation rows, which it can no longer stop on. Returns the
    scorer and a record for the tuning summary.
    """
    pool = pooled(data)
    rounds = chosen.model.rounds() if isinstance(chosen.model, LightGBMScorer) else None
    scorer = fit_family(
        chosen.family, chosen.best_params, pool, spec, features=features, rounds=rounds
    )
    return scorer, {"rows": len(pool.y_train), **({"rounds": rounds} if rounds else {})}


def pooled(data: Matrices) -> Matrices:
    """The train and validation rows together as training rows (validation kept as is)."""
    return Matrices(
        np.concatenate([data.X_train, data.X_valid]),
        np.concatenate([data.y_train, data.y_valid]),
        data.X_valid,
        data.y_valid,
        data.categorical,
        data.n_categories,
    )


def learning_curve(
    outcome: TrainingOutcome,
    spec: ProjectSpec,
    *,
    shares: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 1.0),
) -> list[dict[str, Any]]:
    """Refit the chosen family on growing shares of the training rows.

    The metric is measured on train and validation. A wide, persistent gap says variance
    (more data or regularization helps); two low, converged curves say bias (a richer model
    or better features help). No fit sees the validation rows it is scored on: with folds
    the curve grows on fold 1 (the latest, for time-ordered folds), else on the single
    split, and boosting runs the chosen model's rounds rather than stopping early on them.
    """
    data = outcome.folds[0] if outcome.folds else outcome.matrices
    result = outcome.results[outcome.family]
    rounds = result.refit_rounds
    if rounds is None and isinstance(result.model, LightGBMScorer):
        rounds = result.model.rounds()
    rng = np.random.default_rng(spec.seed)
    order = rng.permutation(len(data.y_train))
    metric = "auc" if spec.tuning.metric == "log_loss" else spec.tuning.metric
    points = []
    for share in shares:
        rows = np.sort(order[: max(int(len(order) * share), 50)])
        if len(np.unique(data.y_train[rows])) < 2:
            continue
        subset = Matrices(
            data.X_train[rows],
            data.y_train[rows],
            data.X_valid,
            data.y_valid,
            data.categorical,
            data.n_categories,
        )
        scorer = fit_family(
            outcome.family,
            outcome.params,
            subset,
            spec,
            features=outcome.model.features,
            rounds=rounds,
        )
        points.append(
            {
                "train_size": int(len(rows)),
                "train_metric": validation_score(
                    metric, subset.y_train, scorer.probability(subset.X_train)
                ),
                "validation_metric": validation_score(
                    metric, data.y_valid, scorer.probability(data.X_valid)
                ),
                "metric": metric,
            }
        )
    return points
