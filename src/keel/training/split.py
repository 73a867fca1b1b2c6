"""Train / validation / test splits: stratified random, by time, or the delayed-label protocol.

The delayed-label protocol also gives validation folds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from keel.errors import TrainingError
from keel.spec import SplitSpec


@dataclass(frozen=True)
class Split:
    """Row positions of each part; the test rows are never seen by tuning."""

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
) -> Split:
    """Split row positions as the spec says; every part must hold both classes."""
    if spec.method in ("time", "delayed"):
        if time is None:
            raise TrainingError(f"a {spec.method} split needs the time column")
        times = pd.to_datetime(time).reset_index(drop=True)
        if spec.method == "time":
            result = _by_time(times, spec)
        else:
            entities = None if entity is None else entity.reset_index(drop=True)
            result = _delayed(times, y, entities, spec)
    else:
        result = _stratified(y, spec, seed)
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
    return result


def _delayed(time: pd.Series, y: np.ndarray, entity: pd.Series | None, spec: SplitSpec) -> Split:
    """Train window, unused delay, evaluation window; folds are the same layout shifted back."""
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
        layout(start - k * spec.test_days * days) for k in range(1, spec.validation_folds + 1)
    )
    return Split(train, folds[0][1], test, folds)


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
