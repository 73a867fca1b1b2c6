"""Metrics per evaluation day, and precision among the top k entities (card precision@k).

Card precision@k, as in the Fraud Detection Handbook: on each day, every card is scored by
the highest score of its transactions and is fraudulent when any of them is; the share of
fraudulent cards among the k highest is that day's value, and the mean over the days is
reported. Ties between cards keep the order of first appearance.

The handbook's final rule (``card_precision_top_k`` with its default
``remove_detected_frauded_cards=True``) also blocks the cards it has found: a card that was
fraudulent and among an earlier day's top k leaves every later day. False positives stay,
and so do fraudulent cards the top k missed. Each day standing alone is kept as a second,
separately named value.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.metrics import average_precision_score, roc_auc_score

from keel.errors import TrainingError


def _top_entities(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """The ``k`` entities with the highest maximum score, each with its maximum label."""
    cards = frame.groupby("entity", sort=False).agg(score=("score", "max"), y=("y", "max"))
    return cards.sort_values("score", ascending=False, kind="stable").head(k)


def precision_at_k_entities(
    entity: ArrayLike, y_true: ArrayLike, score: ArrayLike, k: int
) -> float:
    """Share of positive entities among the ``k`` entities with the highest maximum score.

    The count of positive entities is divided by k. One day on its own: nothing is removed.
    """
    if k < 1:
        raise TrainingError(f"k must be at least 1, got {k}")
    frame = pd.DataFrame(
        {"entity": np.asarray(entity), "y": np.asarray(y_true), "score": np.asarray(score)}
    )
    return float(_top_entities(frame, k)["y"].sum()) / k


def _auc_or_none(y: np.ndarray, p: np.ndarray, metric: Any) -> float | None:
    return float(metric(y, p)) if 0 < y.sum() < len(y) else None


def daily_metrics(
    day: ArrayLike,
    y_true: ArrayLike,
    score: ArrayLike,
    *,
    entity: ArrayLike | None = None,
    k: int | None = None,
    remove_detected: bool = True,
) -> list[dict[str, Any]]:
    """AUC, average precision (and precision@k entities) for each day, in date order.

    A day with one class has no AUC. With ``entity`` and ``k``, ``precision_at_{k}`` follows
    the handbook's rule when ``remove_detected`` (entities found positive in an earlier day's
    top k are left out, counted in ``entities_blocked``), and ``precision_at_{k}_days_alone``
    scores the whole day; without ``remove_detected`` each day stands alone.
    """
    if k is not None and k < 1:
        raise TrainingError(f"k must be at least 1, got {k}")
    frame = pd.DataFrame(
        {
            "day": pd.to_datetime(np.asarray(day)).floor("D"),
            "y": np.asarray(y_true),
            "score": np.asarray(score, dtype=float),
        }
    )
    if entity is not None:
        frame["entity"] = np.asarray(entity)
    detected: set[Any] = set()
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
            alone = float(_top_entities(part, k)["y"].sum()) / k
            if remove_detected:
                blocked = part["entity"].isin(detected)
                top = _top_entities(part[~blocked], k)
                found = top.index[top["y"] > 0]
                row["entities_blocked"] = int(part.loc[blocked, "entity"].nunique())
                row[f"precision_at_{k}"] = len(found) / k
                row[f"precision_at_{k}_days_alone"] = alone
                detected.update(found)
            else:
                row[f"precision_at_{k}"] = alone
        rows.append(row)
    return rows
