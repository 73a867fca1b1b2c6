"""Train a project's model: split, preprocess, tune each family, pick the best on validation.

A plain function over a clean, contract-typed frame; it reads and writes nothing. Given a
Dask engine, the tuning trials run on its workers (:mod:`keel.training.distributed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from keel.engine import Engine
from keel.errors import TrainingError
from keel.features.cleaning import target_vector
from keel.features.online import serving_features
from keel.models.artifact import KeelModel
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

    def tuning_summary(self, metric: str) -> dict[str, Any]:
        """Per-family best values, the chosen family and every trial, for logs and the card."""
        studies = {f: r.study for f, r in self.results.items() if r.study}
        return {
            "metric": metric,
            "chosen_family": self.family,
            "best": {f: r.best_value for f, r in self.results.items()},
            "trials": [t for r in self.results.values() for t in r.trials],
            **({"studies": studies} if studies else {}),
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
    """Tune every family in the spec and return the one best on the validation rows.

    With a distributed ``engine`` the trials run on its workers; by default they run here.
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
    split = split_rows(y, spec.split, seed=spec.seed, time=time, entity=entity)
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
    maximize = spec.tuning.maximize
    chosen = (max if maximize else min)(results.values(), key=lambda r: r.best_value)
    model = KeelModel(
        preprocessor=pre,
        scorer=chosen.model,
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
        model, chosen.family, chosen.best_params, results, split, data, X_test, y[split.test]
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
    or better features help).
    """
    data = outcome.matrices
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
            outcome.family, outcome.params, subset, spec, features=outcome.model.features
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
