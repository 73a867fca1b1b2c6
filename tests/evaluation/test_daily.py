"""Metrics per day and card precision@k against a plain reading of their definition."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keel.errors import TrainingError
from keel.evaluation.daily import daily_metrics, precision_at_k_entities


def test_card_precision_takes_each_cards_highest_score_and_any_fraud() -> None:
    cards = ["a", "a", "b", "c", "c", "d"]
    fraud = [0, 1, 0, 0, 0, 1]
    score = [0.9, 0.1, 0.8, 0.7, 0.2, 0.3]
    # a: 0.9 and fraudulent; b: 0.8; c: 0.7; d: 0.3 and fraudulent.
    assert precision_at_k_entities(cards, fraud, score, 1) == 1.0
    assert precision_at_k_entities(cards, fraud, score, 3) == pytest.approx(1 / 3)
    assert precision_at_k_entities(cards, fraud, score, 4) == 0.5
    assert (
        precision_at_k_entities(cards, fraud, score, 100) == 2 / 100
    )  # divided by k, not by the cards there are
    with pytest.raises(TrainingError, match="k must be at least 1"):
        precision_at_k_entities(cards, fraud, score, 0)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 1), st.floats(0, 1)), min_size=1, max_size=40
    ),
    st.integers(1, 8),
)
def test_card_precision_equals_its_definition(rows: list, k: int) -> None:
    cards, fraud, score = (list(x) for x in zip(*rows, strict=True))
    best: dict[int, tuple[float, int]] = {}
    for card, y, s in rows:
        first = best.get(card, (-1.0, 0))
        best[card] = (max(first[0], s), max(first[1], y))
    ranked = sorted(
        best.items(), key=lambda item: -item[1][0]
    )  # stable: first appearance wins ties
    assert precision_at_k_entities(cards, fraud, score, k) == sum(y for _, (_, y) in ranked[:k]) / k


def test_daily_metrics_split_by_calendar_day() -> None:
    day = pd.to_datetime(
        [
            "2018-08-08 00:01",
            "2018-08-08 23:59",
            "2018-08-08 12:00",
            "2018-08-09 09:00",
            "2018-08-09 10:00",
        ]
    )
    rows = daily_metrics(
        day,
        np.array([1, 0, 0, 0, 0]),
        np.array([0.9, 0.2, 0.4, 0.5, 0.1]),
        entity=np.array([1, 2, 3, 1, 2]),
        k=2,
    )
    assert [r["day"] for r in rows] == ["2018-08-08", "2018-08-09"]
    assert rows[0] == {
        "day": "2018-08-08",
        "rows": 3,
        "positives": 1,
        "auc": 1.0,
        "average_precision": 1.0,
        "entities": 3,
        "positive_entities": 1,
        "precision_at_2": 0.5,
    }
    assert rows[1]["auc"] is None and rows[1]["positives"] == 0 and rows[1]["precision_at_2"] == 0.0
