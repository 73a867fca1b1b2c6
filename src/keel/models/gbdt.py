"""The gradient-boosting family (LightGBM), stored as LightGBM's own text model."""

from __future__ import annotations

import ctypes
import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from keel.errors import IntegrityError


@dataclass
class LightGBMScorer:
    """Scores rows of a preprocessed matrix with a LightGBM booster."""

    booster: Any

    family = "lightgbm"
    file_name = "lightgbm.txt"

    def margin(self, X: np.ndarray) -> np.ndarray:
        """Log-odds of the positive class."""
        return self.booster.predict(X, raw_score=True, num_threads=_threads(X))

    def probability(self, X: np.ndarray) -> np.ndarray:
        """Probability of the positive class."""
        if len(X) == 1:
            return np.array([self._one_row(X[0])])
        return self.booster.predict(X, num_threads=_threads(X))

    @functools.cached_property
    def _one_row(self) -> _OneRow:
        return _OneRow(self.booster)

    def rounds(self) -> int:
        """The number of boosting rounds the model holds."""
        return int(self.booster.current_iteration())

    def to_bytes(self) -> bytes:
        """LightGBM's text format: readable, diffable, pickle-free."""
        return self.booster.model_to_string().encode("utf-8")

    @classmethod
    def from_bytes(cls, raw: bytes) -> LightGBMScorer:
        """Rebuild from :meth:`to_bytes` output."""
        import lightgbm as lgb

        try:
            return cls(lgb.Booster(model_str=raw.decode("utf-8")))
        except (lgb.basic.LightGBMError, UnicodeDecodeError) as err:
            raise IntegrityError(f"{cls.file_name} is not a LightGBM text model: {err}") from err


class _OneRow:
    """LightGBM's fast single-row prediction (its C API), set up once.

    It runs the C++ code of ``Booster.predict``.

    ``Booster.predict`` rebuilds a predictor and its arrays on every call, about 70 us of a
    request's 0.5 ms. The C API is not safe for concurrent calls on one handle, hence the lock.
    Uses ``lightgbm.basic._LIB``, private but stable; the lock file pins the version.
    """

    def __init__(self, booster: Any) -> None:
        from lightgbm.basic import _LIB, _c_str, _safe_call

        self._lib, self._check = _LIB, _safe_call
        self._handle = ctypes.c_void_p()
        self._check(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(0),
                ctypes.c_int(0),  # normal prediction, from the first tree
                ctypes.c_int(booster.best_iteration),
                ctypes.c_int(1),  # as Booster.predict; float64 input
                ctypes.c_int32(booster.num_feature()),
                _c_str("num_threads=1"),
                ctypes.byref(self._handle),
            )
        )
        self._out = np.empty(1, dtype=np.float64)
        self._out_pointer = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self._length = ctypes.c_int64(0)
        self._lock = threading.Lock()

    def __call__(self, row: np.ndarray) -> float:
        """The probability for one row of float64 features."""
        row = np.ascontiguousarray(row, dtype=np.float64)
        with self._lock:
            self._check(
                self._lib.LGBM_BoosterPredictForMatSingleRowFast(
                    self._handle,
                    row.ctypes.data_as(ctypes.c_void_p),
                    ctypes.byref(self._length),
                    self._out_pointer,
                )
            )
            return float(self._out[0])

    def __del__(self) -> None:
        if getattr(self, "_handle", None):
            self._lib.LGBM_FastConfigFree(self._handle)


def _threads(X: np.ndarray) -> int:
    """One thread for a few rows (a request): waking OpenMP's team costs more than the work, and far
    more when another process holds a core; all cores (0: LightGBM's default) for tables. Rows are
    scored independently, so the numbers are the same either way."""
    return 1 if len(X) < 1000 else 0


def lightgbm_params(
    params: dict[str, Any], *, seed: int, threads: int, monotone: Sequence[int] | None
) -> dict[str, Any]:
    """Full, deterministic LightGBM parameters from tuned ones."""
    full = {
        "objective": "binary",
        "metric": "auc",
        "seed": seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": threads,
        "verbosity": -1,
        "feature_pre_filter": False,
        **params,
    }
    if full.get("bagging_fraction", 1.0) < 1.0:
        full["bagging_freq"] = 1
    if monotone and any(monotone):
        full["monotone_constraints"] = list(monotone)
        full["monotone_constraints_method"] = "advanced"
    return full


def fit_lightgbm(
    X: np.ndarray,
    y: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    *,
    params: dict[str, Any],
    categorical: Sequence[int],
    max_rounds: int,
    early_stopping_rounds: int,
    callbacks: Sequence[Callable[..., None]] = (),
) -> LightGBMScorer:
    """Train with early stopping on the validation rows; keeps only the best iteration's trees."""
    import lightgbm as lgb

    train = lgb.Dataset(X, y, categorical_feature=list(categorical) or "auto", free_raw_data=False)
    valid = lgb.Dataset(X_valid, y_valid, reference=train)
    booster = lgb.train(
        params,
        train,
        num_boost_round=max_rounds,
        valid_sets=[valid],
        valid_names=["validation"],
        callbacks=[lgb.early_stopping(early_stopping_rounds, verbose=False), *callbacks],
    )
    best = booster.best_iteration or booster.current_iteration()
    text = booster.model_to_string(num_iteration=best)
    return LightGBMScorer(lgb.Booster(model_str=text))


def fit_lightgbm_rounds(
    X: np.ndarray, y: np.ndarray, *, params: dict[str, Any], categorical: Sequence[int], rounds: int
) -> LightGBMScorer:
    """Train a fixed number of rounds (chosen beforehand, for example on validation folds)."""
    import lightgbm as lgb

    train = lgb.Dataset(X, y, categorical_feature=list(categorical) or "auto", free_raw_data=False)
    booster = lgb.train(params, train, num_boost_round=rounds)
    return LightGBMScorer(lgb.Booster(model_str=booster.model_to_string()))
