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
        "entities_blocked": 0,
        "precision_at_2": 0.5,
        "precision_at_2_days_alone": 0.5,
    }
    assert rows[1]["auc"] is None and rows[1]["positives"] == 0 and rows[1]["precision_at_2"] == 0.0


def _handbook_card_precision(
    rows: list[tuple[int, int, int, float]], k: int, remove_detected: bool
) -> list[float]:
    """The handbook's ``card_precision_top_k``, read plainly: a loop over days in date order."""
    detected: list[int] = []
    daily = []
    for day in sorted({d for d, _, _, _ in rows}):
        best: dict[int, tuple[float, int]] = {}  # first appearance wins ties (sorted is stable)
        for d, card, y, s in rows:
            if d == day and card not in detected:
                first = best.get(card, (-1.0, 0))
                best[card] = (max(first[0], s), max(first[1], y))
        top = sorted(best.items(), key=lambda item: -item[1][0])[:k]
        found = [card for card, (_, y) in top if y == 1]
        daily.append(len(found) / k)
        if remove_detected:
            detected.extend(found)
    return daily


def _daily_card_precision(
    rows: list[tuple[int, int, int, float]], k: int, remove_detected: bool
) -> list[dict]:
    day, card, fraud, score = (list(x) for x in zip(*rows, strict=True))
    start = pd.Timestamp("2018-08-08 10:00")
    return daily_metrics(
        [start + pd.Timedelta(days=d) for d in day],
        np.array(fraud),
        np.array(score),
        entity=np.array(card),
        k=k,
        remove_detected=remove_detected,
    )


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),
            st.integers(0, 6),
            st.integers(0, 1),
            st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9]) | st.floats(0, 1),
        ),
        min_size=1,
        max_size=60,
    ),
    st.integers(1, 4),
)
def test_card_precision_by_day_equals_the_handbooks_loop(rows: list, k: int) -> None:
    handbook = _daily_card_precision(rows, k, remove_detected=True)
    assert [d[f"precision_at_{k}"] for d in handbook] == _handbook_card_precision(rows, k, True)
    alone = _handbook_card_precision(rows, k, False)
    assert [d[f"precision_at_{k}_days_alone"] for d in handbook] == alone
    plain = _daily_card_precision(rows, k, remove_detected=False)
    assert [d[f"precision_at_{k}"] for d in plain] == alone
    assert all(f"precision_at_{k}_days_alone" not in d for d in plain)


def test_card_precision_by_day_matches_the_handbooks_loop_on_many_cards() -> None:
    rng = np.random.default_rng(7)
    n = 4000
    rows = list(
        zip(
            rng.integers(0, 7, n).tolist(),
            rng.integers(0, 300, n).tolist(),
            (rng.random(n) < 0.15).astype(int).tolist(),
            rng.random(n).round(3).tolist(),  # rounded: ties between cards happen
            strict=True,
        )
    )
    daily = _daily_card_precision(rows, 20, remove_detected=True)
    assert [d["precision_at_20"] for d in daily] == _handbook_card_precision(rows, 20, True)
    assert [d["precision_at_20_days_alone"] for d in daily] == _handbook_card_precision(
        rows, 20, False
    )
    assert sum(d["entities_blocked"] for d in daily) > 0  # removal did happen


def test_a_card_detected_on_one_day_leaves_the_later_days() -> None:
    """k = 2. A is caught on day 1; D, a fraud missed on day 1, is caught on day 2.

    C, a false positive, stays in the ranking every day.
    """
    rows = [
        (0, "A", 1, 0.9), (0, "C", 0, 0.8), (0, "D", 1, 0.1),
        (1, "A", 1, 0.95), (1, "C", 0, 0.7), (1, "D", 1, 0.6), (1, "E", 0, 0.5),
        (2, "A", 1, 0.9), (2, "D", 1, 0.8), (2, "C", 0, 0.3), (2, "E", 0, 0.2),
    ]  # fmt: skip
    daily = _daily_card_precision(rows, 2, remove_detected=True)
    # Day 2 alone: A and C. With A blocked: C and D, so D is detected too.
    # Day 3 alone: A and D, both fraudulent; with both blocked: C and E.
    assert [d["precision_at_2_days_alone"] for d in daily] == [0.5, 0.5, 1.0]
    assert [d["precision_at_2"] for d in daily] == [0.5, 0.5, 0.0]
    assert [d["entities_blocked"] for d in daily] == [0, 1, 2]
    assert [d["entities"] for d in daily] == [3, 4, 4]  # counts are of the whole day
    plain = _daily_card_precision(rows, 2, remove_detected=False)
    assert [d["precision_at_2"] for d in plain] == [0.5, 0.5, 1.0]


def test_daily_metrics_refuses_k_below_one() -> None:
    with pytest.raises(TrainingError, match="k must be at least 1, got 0"):
        daily_metrics(["2018-08-08"], [1], [0.5], entity=[1], k=0)
