"""Metrics per evaluation day, and precision among the top k entities (card precision@k).

Card precision@k, as in the fraud handbook: on each day, every card is scored by the
highest score of its transactions and is fraudulent when any of them is; the share of
fraudulent cards among the k highest is that day's value, and the mean over the days is
reported. Ties between cards keep the order of first appearance.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.metrics import average_precision_score, roc_auc_score

from keel.errors import TrainingError


def precision_at_k_entities(
    entity: ArrayLike, y_true: ArrayLike, score: ArrayLike, k: int
) -> float:
    """Share of positive entities among the ``k`` entities with the highest maximum score.

    The count of positive entities is divided by k.
    """
    if k < 1:
        raise TrainingError(f"k must be at least 1, got {k}")
    frame = pd.DataFrame(
        {"entity": np.asarray(entity), "y": np.asarray(y_true), "score": np.asarray(score)}
    )
    cards = frame.groupby("entity", sort=False).agg(score=("score", "max"), y=("y", "max"))
    top = cards.sort_values("score", ascending=False, kind="stable").head(k)
    return float(top["y"].sum()) / k


def _auc_or_none(y: np.ndarray, p: np.ndarray, metric: Any) -> float | None:
    return float(metric(y, p)) if 0 < y.sum() < len(y) else None


def daily_metrics(
    day: ArrayLike,
    y_true: ArrayLike,
    score: ArrayLike,
    *,
    entity: ArrayLike | None = None,
    k: int | None = None,
) -> list[dict[str, Any]]:
    """AUC, average precision (and precision@k entities) for each day.

    A day with one class has no AUC.
    """
    frame = pd.DataFrame(
        {
            "day": pd.to_datetime(np.asarray(day)).floor("D"),
            "y": np.asarray(y_true),
            "score": np.asarray(score, dtype=float),
        }
    )
    if entity is not None:
        frame["entity"] = np.asarray(entity)
    rows = []
    for key, part in frame.groupby("day", sort=True):
        # pandas-stubs types a group key as any scalar; a datetime64 column's keys are Timestamps.
        when = cast(pd.Timestamp, key)
        y, p = part["y"].to_numpy(), part["score"].to_numpy()
        row: dict[str, Any] = {
            "day": when.date().isoformat(),
            "rows": int(len(part)),
            "positives": int(y.sum()),
            "auc": _auc_or_none(y, p, roc_auc_score),
            "average_precision": _auc_or_none(y, p, average_precision_score),
        }
        if entity is not None and k is not None:
            row["entities"] = int(part["entity"].nunique())
            row["positive_entities"] = int(part.loc[part["y"] == 1, "entity"].nunique())
            row[f"precision_at_{k}"] = precision_at_k_entities(part["entity"], y, p, k)
        rows.append(row)
    return rows
