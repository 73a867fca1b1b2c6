"""The gradient-boosting family fitted data-parallel on a Dask cluster (``lightgbm.dask``).

The training rows are cut into one contiguous block per worker (workers in address order)
and each block is placed on its worker; LightGBM then trains with ``tree_learner=data``:
every worker builds histograms of its own rows, and they are summed over LightGBM's own
network (ports found free on each worker by ``lightgbm.dask``, held until training binds
them, so workers on one host never clash). Each worker uses its Dask thread count.

The result is a plain local Booster stored as LightGBM text, the same
:class:`~keel.models.gbdt.LightGBMScorer` an in-process fit gives. Why its trees differ
from an in-process fit on the same rows is written in :mod:`keel.training.distributed`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from keel.models.gbdt import LightGBMScorer

# Ports and addresses lightgbm.dask picks for each fit (they change every run): kept out of the
# stored text.
_NETWORK_PARAMETERS = ("[machines: ", "[local_listen_port: ")


def fit_lightgbm_dask(
    client: Any,
    X: np.ndarray,
    y: np.ndarray,
    *,
    params: dict[str, Any],
    categorical: Sequence[int],
    rounds: int,
) -> LightGBMScorer:
    """Train ``rounds`` rounds over the cluster's workers; returns a local, pickle-free scorer."""
    import lightgbm as lgb
    from lightgbm.dask import DaskLGBMClassifier

    X_parts, y_parts = _spread(client, X, y)
    dask_params = {k: v for k, v in params.items() if k not in ("num_threads", "n_jobs")}
    model = DaskLGBMClassifier(
        client=client, n_estimators=rounds, tree_learner="data", **dask_params
    )
    with warnings.catch_warnings():
        # lightgbm.dask always warns that it ignores the estimator's default n_jobs (it uses each
        # worker's threads instead): https://github.com/lightgbm-org/LightGBM/issues/6797
        warnings.filterwarnings(
            "ignore", message="Parameter n_jobs will be ignored", category=UserWarning
        )
        model.fit(X_parts, y_parts, categorical_feature=list(categorical) or "auto")
    text = without_network(model.booster_.model_to_string())
    return LightGBMScorer(lgb.Booster(model_str=text))


def _spread(client: Any, X: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
    """Dask arrays whose i-th block of rows lives on the i-th worker (by address).

    Keys are fresh (``hash=False``): the same rows scattered again under their content's key
    could be forgotten by the scheduler as the previous fit's futures are released.
    """
    import dask.array as da

    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    bounds = np.linspace(0, len(y), len(workers) + 1).astype(int)
    X_blocks, y_blocks = [], []
    for worker, start, stop in zip(workers, bounds[:-1], bounds[1:], strict=True):
        if stop == start:
            continue
        X_future, y_future = client.scatter(
            [X[start:stop], y[start:stop]], workers=[worker], hash=False
        )
        X_blocks.append(da.from_delayed(X_future, shape=(stop - start, X.shape[1]), dtype=X.dtype))
        y_blocks.append(da.from_delayed(y_future, shape=(stop - start,), dtype=y.dtype))
    return da.concatenate(X_blocks), da.concatenate(y_blocks)


def without_network(text: str) -> str:
    """A LightGBM text model without the network parameters of the fit that made it."""
    return "".join(
        line for line in text.splitlines(keepends=True) if not line.startswith(_NETWORK_PARAMETERS)
    )
