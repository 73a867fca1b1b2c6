"""Train / validation / test splits: stratified random, by time, or the delayed-label protocol.

Tuning scores candidates on validation folds: the delayed-label protocol brings its own
(earlier copies of its layout); a stratified or time split gets K folds of its train and
validation rows when ``tuning.folds`` asks for them (:func:`fold_count`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from keel.errors import TrainingError
from keel.spec import SplitSpec

# tuning.folds "auto": K-fold below these sizes of the tuning pool (train + validation rows).
AUTO_FOLDS = 5
SMALL_MINORITY = 1_000
SMALL_ROWS = 100_000


@dataclass(frozen=True)
class Split:
    """Row positions of each part; the test rows are never seen by tuning.

    ``train``: the rows the final model is fitted on. Without folds, ``validation`` holds the
    rows each candidate is scored on. With ``folds`` (pairs of training and validation rows;
    for time-ordered folds the latest comes first), candidates are scored on every fold and
    ``validation`` is the union of the folds' validation rows, each of which was held out of
    the fold that scored it (but may lie in ``train``).
    """

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    folds: tuple[tuple[np.ndarray, np.ndarray], ...] = ()

    def sizes(self) -> dict[str, int]:
        """Rows in each part."""
        return {
            "train": len(self.train),
            "validation": len(self.validation),
            "test": len(self.test),
        }


def split_rows(
    y: np.ndarray,
    spec: SplitSpec,
    *,
    seed: int,
    time: pd.Series | None = None,
    entity: pd.Series | None = None,
    folds: int | Literal["auto"] = 1,
) -> Split:
    """Split row positions as the spec says; every part must hold both classes.

    ``folds`` (``tuning.folds``) turns a stratified or time split into K folds of its train
    and validation rows (:func:`fold_count`); the delayed split keeps its own folds.
    """
    if spec.method in ("time", "delayed"):
        if time is None:
            raise TrainingError(f"a {spec.method} split needs the time column")
        times = pd.to_datetime(time).reset_index(drop=True)
        if spec.method == "time":
            result = _by_time(times, spec)
            k = fold_count(folds, y[np.concatenate([result.train, result.validation])])
            single = result
            result = _auto_fallback(y, single, lambda: _time_folds(single, times, k), folds, k)
        else:
            entities = None if entity is None else entity.reset_index(drop=True)
            result = _delayed(times, y, entities, spec)
    else:
        result = _stratified(y, spec, seed)
        k = fold_count(folds, y[np.concatenate([result.train, result.validation])])
        single = result
        result = _auto_fallback(y, single, lambda: _stratified_folds(single, y, k, seed), folds, k)
    _check_classes(y, result)
    return result


def _auto_fallback(
    y: np.ndarray,
    single: Split,
    make_folds: Callable[[], Split],
    folds: int | Literal["auto"],
    k: int,
) -> Split:
    """The K-fold split, unless "auto" chose folds that a class cannot fill: then the single
    split. "auto" never fails a table that one split can train on; a K the spec forces does,
    naming the part that lacks a class."""
    if k <= 1:
        return single
    if folds != "auto":
        return make_folds()
    pool = y[np.concatenate([single.train, single.validation])]
    rarer = int(min(np.sum(pool == 1), np.sum(pool != 1)))
    if rarer < k:
        return single
    folded = make_folds()
    return folded if _both_classes(y, folded) else single


def _both_classes(y: np.ndarray, result: Split) -> bool:
    """Whether every fold's training and validation rows hold both classes."""
    return all(len(np.unique(y[rows])) == 2 for fold in result.folds for rows in fold)


def fold_count(folds: int | Literal["auto"], y: np.ndarray) -> int:
    """How many folds tuning uses on the pool of train and validation rows labelled ``y``.

    An integer is taken as given (1: a single validation split). ``"auto"`` gives
    :data:`AUTO_FOLDS` folds when the pool is small, a single split otherwise. Small means
    fewer than :data:`SMALL_MINORITY` rows of its rarer class and fewer than
    :data:`SMALL_ROWS` rows. An AUC's precision is set by the rarer class: a single
    validation part (a quarter of the pool by default) then holds under 250 of them, where
    AUC's standard error is about 0.02 (Hanley & McNeil), as large as the differences tuning
    must resolve; with K folds every pool row is scored once. Above :data:`SMALL_ROWS` rows,
    K fits per trial cost too much for "auto" (an integer still forces folds).
    """
    if folds != "auto":
        return folds
    rarer = int(min(np.sum(y == 1), np.sum(y != 1)))
    return AUTO_FOLDS if rarer < SMALL_MINORITY and len(y) < SMALL_ROWS else 1


def _check_classes(y: np.ndarray, result: Split) -> None:
    parts = [("train", result.train), ("validation", result.validation), ("test", result.test)]
    parts += [
        (f"fold {k} {name}", rows)
        for k, fold in enumerate(result.folds, 1)
        for name, rows in zip(("train", "validation"), fold, strict=True)
    ]
    for part, rows in parts:
        if len(np.unique(y[rows])) < 2:
            raise TrainingError(
                f"the {part} split ({len(rows)} rows) holds one class only; "
                "use more data or change split sizes/dates"
            )


def _delayed(time: pd.Series, y: np.ndarray, entity: pd.Series | None, spec: SplitSpec) -> Split:
    """Train window, unused delay, evaluation window; folds are the same layout shifted back.

    Fold k starts ``delay_days + k * test_days`` days before the training window (the Fraud
    Detection Handbook's validation protocol), so fold 1 validates on the days that end with
    the training window: every fold validates on days whose labels are known when the model
    is trained, never on the delay period.
    """
    day = time.dt.floor("D")
    if spec.train_start is None:  # the spec's checks require it for method 'delayed'
        raise TrainingError("a delayed split needs split.train_start")
    start = pd.Timestamp(spec.train_start)
    if time.dt.tz is not None:
        start = start.tz_localize(time.dt.tz)
    positive = y == 1
    days = pd.Timedelta(days=1)

    def layout(first: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
        train = (day >= first) & (day < first + spec.train_days * days)
        known = set(entity[train & positive]) if entity is not None else set()
        evaluation = []
        for d in range(spec.test_days):
            when = first + (spec.train_days + spec.delay_days + d) * days
            chosen = day == when
            if entity is not None:
                known |= set(entity[(day == when - (spec.delay_days + 1) * days) & positive])
                chosen &= ~entity.isin(known)
            evaluation.append(np.flatnonzero(chosen))
        rows = np.flatnonzero(train), np.concatenate(evaluation)
        if not len(rows[0]) or not len(rows[1]):
            empty = "train" if not len(rows[0]) else "test"
            raise TrainingError(
                f"the delayed split starting {first.date()} has an empty {empty} window; "
                f"data run from {time.min()} to {time.max()}; "
                "move split.train_start or lower split.validation_folds"
            )
        return rows

    train, test = layout(start)
    folds = tuple(
        layout(start - (spec.delay_days + k * spec.test_days) * days)
        for k in range(1, spec.validation_folds + 1)
    )
    return Split(train, np.unique(np.concatenate([v for _, v in folds])), test, folds)


def _stratified_folds(split: Split, y: np.ndarray, k: int, seed: int) -> Split:
    """K stratified folds (seeded) of the train and validation rows; all of them train the model."""
    from sklearn.model_selection import StratifiedKFold

    pool = np.sort(np.concatenate([split.train, split.validation]))
    rarer = int(min(np.sum(y[pool] == 1), np.sum(y[pool] != 1)))
    if rarer < k:
        raise TrainingError(
            f"tuning.folds: {k} stratified folds need at least {k} rows of each class in the "
            f"train and validation rows, but the rarer class has {rarer}; "
            f"lower tuning.folds (1 for a single split) or use more data"
        )
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    pairs = tuple((pool[t], pool[v]) for t, v in folds.split(pool, y[pool]))
    return Split(pool, pool, split.test, pairs)


def _time_folds(split: Split, time: pd.Series, k: int) -> Split:
    """Expanding-window folds of the train and validation rows, latest first.

    The rows are cut by time into ``k + 1`` blocks (ties stay in one block); fold j trains
    on the blocks before block j and validates on block j.
    """
    pool = np.sort(np.concatenate([split.train, split.validation]))
    times = time.iloc[pool].reset_index(drop=True)
    ordered = times.sort_values(kind="stable").to_numpy()
    cuts = [pd.Timestamp(ordered[len(ordered) * j // (k + 1)]) for j in range(1, k + 1)]
    if time.dt.tz is not None:
        cuts = [c if c.tz else c.tz_localize(time.dt.tz) for c in cuts]
    folds = []
    for j, cut in enumerate(cuts):
        later = times >= cut
        if j + 1 < len(cuts):
            later &= times < cuts[j + 1]
        train, valid = pool[(times < cut).to_numpy()], pool[later.to_numpy()]
        if not len(train) or not len(valid):
            raise TrainingError(
                f"tuning.folds: {k} time-ordered folds leave fold {k - j} with an empty "
                f"{'train' if not len(train) else 'validation'} part (too many rows share one "
                f"time, {cut}); lower tuning.folds (1 for a single split)"
            )
        folds.append((train, valid))
    folds.reverse()
    validation = np.unique(np.concatenate([v for _, v in folds]))
    return Split(pool, validation, split.test, tuple(folds))


def _stratified(y: np.ndarray, spec: SplitSpec, seed: int) -> Split:
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(y))
    try:
        rest, test = train_test_split(rows, test_size=spec.test_size, stratify=y, random_state=seed)
        share = spec.validation_size / (1.0 - spec.test_size)
        train, validation = train_test_split(
            rest, test_size=share, stratify=y[rest], random_state=seed + 1
        )
    except ValueError as err:  # sklearn: a class too small to stratify
        counts = {int(k): int(v) for k, v in zip(*np.unique(y, return_counts=True), strict=True)}
        raise TrainingError(
            f"cannot split {len(y)} rows by class (rows per class: {counts}): {err} "
            "Every part needs both classes; use more data or change split sizes"
        ) from err
    return Split(np.sort(train), np.sort(validation), np.sort(test))


def _by_time(time: pd.Series, spec: SplitSpec) -> Split:
    if time.isna().any():
        raise TrainingError(
            f"the time column has {int(time.isna().sum())} missing value(s); a time split needs all"
        )
    if spec.test_start is not None and spec.validation_start is not None:
        validation_start, test_start = (
            pd.Timestamp(spec.validation_start),
            pd.Timestamp(spec.test_start),
        )
    else:
        ordered = time.sort_values(kind="stable").to_numpy()
        test_start = pd.Timestamp(ordered[int(len(ordered) * (1 - spec.test_size))])
        validation_start = pd.Timestamp(
            ordered[int(len(ordered) * (1 - spec.test_size - spec.validation_size))]
        )
    if time.dt.tz is None and (validation_start.tz is not None or test_start.tz is not None):
        raise TrainingError(
            f"split.validation_start/test_start ({validation_start}, {test_start}) "
            "carry a time zone but the time column does not; "
            "give the dates without a time zone, or make the time column tz-aware"
        )
    if time.dt.tz is not None:
        validation_start = (
            validation_start if validation_start.tz else validation_start.tz_localize(time.dt.tz)
        )
        test_start = test_start if test_start.tz else test_start.tz_localize(time.dt.tz)
    train = np.flatnonzero(time < validation_start)
    validation = np.flatnonzero((time >= validation_start) & (time < test_start))
    test = np.flatnonzero(time >= test_start)
    for part, rows in (("train", train), ("validation", validation), ("test", test)):
        if len(rows) == 0:
            raise TrainingError(
                f"the time split leaves the {part} part empty (validation from {validation_start}, "
                f"test from {test_start}); data run from {time.min()} to {time.max()}"
            )
    return Split(train, validation, test)
