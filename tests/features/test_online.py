"""Online features: a replay of transactions one by one equals the offline features, row for row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from keel.errors import DataError, FeatureStoreError, SpecError
from keel.features.offline import compute_features
from keel.features.online import OnlineFeatures, time_us
from keel.features.stores import MemoryStore, RedisStore, open_store
from keel.features.windows import FeaturePlan
from keel.spec import parse_spec

from factories import make_transactions, transactions_spec
from feature_checks import assert_same_features, replay

FLOATS = {"amount"}


def _spec():
    return parse_spec(transactions_spec())


def test_replay_equals_offline_in_memory() -> None:
    frame = make_transactions(6000, seed=5)
    spec = _spec()
    plan = FeaturePlan.of(spec)
    store = MemoryStore()
    online = replay(frame, OnlineFeatures.of(spec, store), label_delay=pd.Timedelta("1d"))
    assert_same_features(compute_features(frame, plan), online, plan, FLOATS)
    # Events older than every window were forgotten: the store holds about 7 days of 20.
    assert store.size() < 2 * 6000 * 0.45


def test_replay_equals_offline_with_a_real_redis(redis_url: str) -> None:
    frame = make_transactions(2500, seed=6, days=10)
    spec = _spec()
    plan = FeaturePlan.of(spec)
    store = open_store(redis_url, prefix="replay")
    assert isinstance(store, RedisStore)
    try:
        online = replay(frame, OnlineFeatures.of(spec, store), label_delay=pd.Timedelta("1d"))
    finally:
        store.close()
    assert_same_features(compute_features(frame, plan), online, plan, FLOATS)


def test_a_label_that_arrives_late_changes_nothing_before_its_cutoff() -> None:
    """The terminal risk (2-day delay) reads a label only once the window has reached its event."""
    spec = _spec()
    online = OnlineFeatures.of(spec)
    t0 = pd.Timestamp("2024-03-01 12:00")
    base = {"card": 1, "terminal": 7, "amount": 10.0, "channel": "pos"}
    online.record({**base, "tx_id": 1, "tx_time": t0, "fraud": None})
    online.update({**base, "tx_id": 1, "tx_time": t0, "fraud": 1})
    soon = online.compute({**base, "tx_id": 2, "tx_time": t0 + pd.Timedelta("1d"), "fraud": None})
    later = online.compute({**base, "tx_id": 3, "tx_time": t0 + pd.Timedelta("2d"), "fraud": None})
    assert np.isnan(soon["terminal_risk_1d"]) and soon["terminal_nb_1d"] == 0
    assert later["terminal_risk_1d"] == 1.0 and later["terminal_nb_1d"] == 1
    assert later["card_nb_1d"] == 1  # the new row itself: the first event is 2 days old


def test_stores_forget_only_what_no_window_reaches(redis_url: str) -> None:
    for store in (MemoryStore(), RedisStore(redis_url, prefix="forget")):
        for t in range(10):
            store.add("card", 5, (t * 100, str(t), [t]), forget_until_us=t * 100 - 350)
        assert [e[0] for e in store.events("card", 5, -1, 10_000)] == [600, 700, 800, 900]
        assert [e[0] for e in store.events("card", 5, 600, 800)] == [700, 800]
        assert store.update("card", 5, "7", {0: 70}) and not store.update("card", 5, "1", {0: 10})
        assert store.events("card", 5, 650, 700) == [(700, "7", [70])]
        assert store.events("card", 6, -1, 10_000) == []


def test_stores_keep_an_event_once_and_update_only_the_values_given(redis_url: str) -> None:
    for store in (MemoryStore(), RedisStore(redis_url, prefix="once")):
        store.add("card", 1, (100, "a", [5.5, None]), forget_until_us=0)
        store.add("card", 1, (100, "a", [5.5, None]), forget_until_us=0)  # a retried request
        assert store.update("card", 1, "a", {1: 1})
        assert store.events("card", 1, 0, 200) == [(100, "a", [5.5, 1])]


def test_entity_values_never_share_redis_keys(redis_url: str) -> None:
    """A client-chosen id such as 'V:values' must not land on the keys of the value 'V'.

    Nor on the keys of another entity.
    """
    store = RedisStore(redis_url, prefix="keys")
    for entity, key in (
        ("card", "V"),
        ("card", "V:values"),
        ("card:V", "values"),
        ("card", 5),
        ("card", "5"),
    ):
        store.add(entity, key, (100, f"{entity}/{key}", [1]), forget_until_us=0, idle_ms=60_000)
    for entity, key in (
        ("card", "V"),
        ("card", "V:values"),
        ("card:V", "values"),
        ("card", 5),
        ("card", "5"),
    ):
        assert store.events(entity, key, 0, 200) == [(100, f"{entity}/{key}", [1])]
    store.close()


def test_an_unreachable_redis_is_a_feature_store_error() -> None:
    store = RedisStore("redis://127.0.0.1:9/0", timeout=0.5)  # port 9 (discard) has no server here
    with pytest.raises(FeatureStoreError, match="unreachable"):
        store.events("card", 1, 0, 10)


def test_online_rows_are_checked() -> None:
    online = OnlineFeatures.of(_spec())
    row = {
        "tx_id": 1,
        "tx_time": "2024-03-01 10:00",
        "card": 1,
        "terminal": 2,
        "amount": 5.0,
        "channel": "pos",
    }
    with pytest.raises(DataError, match="no value for the entity column 'card'"):
        online.compute({**row, "card": None})
    with pytest.raises(DataError, match="must be a date-time"):
        online.compute({**row, "tx_time": 1_700_000_000})
    assert time_us("1970-01-01 00:00:00.0000019") == 1  # floored like the kernel's epoch_us
    raw = transactions_spec()
    del raw["data"]["id_column"]
    with pytest.raises(DataError, match="need data.id_column"):
        OnlineFeatures.of(parse_spec(raw))
    with pytest.raises(SpecError, match="memory:// or redis://"):
        open_store("postgres://x")
