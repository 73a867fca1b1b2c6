"""Serving operations: load shedding, request deadline, the shadow challenger and bounded metrics.

A request is held inside the app deterministically by blocking the prediction log's writer:
another SQLite connection holds ``BEGIN EXCLUSIVE`` on the log's file, so the request waits
for a commit that cannot happen until the test releases the lock.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from keel.serving.app import create_app
from keel.serving.predictions import PredictionLog
from keel.serving.served import ServedModel
from keel.spec import parse_spec
from keel.training.trainer import train_model

from factories import loans_spec, make_loans

RECORD = {"income": 20000, "debt": 30000, "late_payments": 3, "region": "east"}


def _engine(seed: int, version: int) -> ServedModel:
    raw = loans_spec("unused.csv", tuning={"trials": 2}, models={"families": ["logistic"]})
    return ServedModel(
        train_model(make_loans(rows=800, seed=seed), parse_spec(raw)).model, "loans", version
    )


@pytest.fixture(scope="module")
def champion() -> ServedModel:
    return _engine(seed=2, version=3)


@pytest.fixture(scope="module")
def challenger() -> ServedModel:
    return _engine(seed=5, version=9)


@pytest.fixture
def blocked_log(tmp_path: Path) -> Iterator[tuple[PredictionLog, sqlite3.Connection]]:
    """A prediction log whose writer is blocked until the test commits the returned connection."""
    log = PredictionLog(tmp_path / "p.db")
    blocker = sqlite3.connect(tmp_path / "p.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    yield log, blocker
    if blocker.in_transaction:
        blocker.execute("COMMIT")
    blocker.close()
    log.close()


def _records(n: int) -> list[dict[str, Any]]:
    rows = make_loans(rows=n, seed=9)
    return [
        {
            "income": int(r.income),
            "debt": int(r.debt),
            "late_payments": int(r.late_payments),
            "region": str(r.region),
        }
        for r in rows.itertuples()
    ]


def _sample(app: FastAPI, name: str, **labels: str) -> float | None:
    return app.state.metrics.registry.get_sample_value(name, labels)


async def _until(condition: Callable[[], bool]) -> None:
    """Poll (on the event loop) until ``condition`` holds; fail after 10 s."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.005)


def test_scoring_beyond_max_in_flight_is_shed_but_probes_still_answer(
    champion: ServedModel, blocked_log: tuple[PredictionLog, sqlite3.Connection]
) -> None:
    log, blocker = blocked_log
    app = create_app(champion, prediction_log=log, max_in_flight=1)

    async def scenario() -> tuple[httpx.Response, ...]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://keel") as client:
            first = asyncio.create_task(client.post("/v1/score", json=RECORD))
            await _until(
                lambda: _sample(app, "keel_in_flight") == 1
            )  # held: waiting for its commit
            shed = await client.post("/v1/score/batch", json={"records": [RECORD]})
            probes = (
                await client.get("/livez"),
                await client.get("/readyz"),
                await client.get("/metrics"),
            )
            assert not first.done()
            blocker.execute("COMMIT")
            return await first, shed, *probes

    first, shed, *probes = asyncio.run(scenario())

    assert shed.status_code == 503 and shed.headers["retry-after"] == "1"
    assert "over 1 requests in flight" in shed.json()["detail"]
    assert [p.status_code for p in probes] == [200, 200, 200]
    assert first.status_code == 200, first.text
    assert [r["request_id"] for r in log.rows()] == [first.json()["request_id"]]
    assert _sample(app, "keel_shed_total", reason="overload") == 1
    assert _sample(app, "keel_requests_total", route="/v1/score/batch", status="503") == 1
    assert _sample(app, "keel_in_flight") == 0


def test_a_request_not_answered_within_the_timeout_is_a_503(
    champion: ServedModel, blocked_log: tuple[PredictionLog, sqlite3.Connection]
) -> None:
    log, _ = blocked_log
    client = TestClient(create_app(champion, prediction_log=log, request_timeout=0.2))

    late = client.post("/v1/score", json=RECORD)
    text = client.get("/metrics").text

    assert late.status_code == 503 and late.headers["retry-after"] == "1"
    assert late.json()["detail"] == "not answered within 0.2 s; retry shortly"
    assert 'keel_shed_total{reason="timeout"} 1.0' in text
    assert 'keel_requests_total{route="/v1/score",status="503"} 1.0' in text
    assert "keel_in_flight 0.0" in text


def test_the_shadow_logs_the_challengers_own_answers_for_the_same_requests(
    tmp_path: Path, champion: ServedModel, challenger: ServedModel
) -> None:
    log = PredictionLog(tmp_path / "p.db")
    app = create_app(champion, prediction_log=log)
    app.state.shadow.set_engine(challenger)
    records = _records(12)

    answers = [TestClient(app).post("/v1/score", json=r).json() for r in records]
    app.state.shadow.drain()
    log.close()  # drain() waits for scoring; close() for the shadow rows' commit

    ids = [a["request_id"] for a in answers]
    champion_rows, shadow_rows = log.rows(), log.rows("shadow_predictions")
    expected = [challenger.score_records([r])[0]["probability"] for r in records]
    assert [{k: v for k, v in a.items() if k != "request_id"} for a in answers] == [
        champion.score_records([r])[0] for r in records
    ]
    assert [(r["request_id"], r["version"], r["probability"]) for r in champion_rows] == [
        (a["request_id"], 3, a["probability"]) for a in answers
    ]
    assert [(r["request_id"], r["version"], r["probability"]) for r in shadow_rows] == [
        (i, 9, p) for i, p in zip(ids, expected, strict=True)
    ]
    assert expected != [a["probability"] for a in answers]  # the two models really differ
    assert _sample(app, "keel_shadow_total", outcome="scored") == len(records)
    assert _sample(app, "keel_shadow_version") == 9


def test_the_shadow_can_be_turned_off_with_the_api_key(
    tmp_path: Path, champion: ServedModel, challenger: ServedModel
) -> None:
    log = PredictionLog(tmp_path / "p.db")
    app = create_app(champion, prediction_log=log, api_key="s3cret")
    app.state.shadow.set_engine(challenger)
    client = TestClient(app)

    refused = [
        client.post("/admin/shadow", json={"enabled": False}),
        client.post("/admin/shadow", json={"enabled": False}, headers={"X-API-Key": "wrong"}),
    ]
    on = client.post("/v1/score", json=RECORD).json()
    switched = client.post(
        "/admin/shadow", json={"enabled": False}, headers={"X-API-Key": "s3cret"}
    )
    off = [client.post("/v1/score", json=r).json() for r in _records(3)]
    app.state.shadow.drain()
    log.close()

    assert [r.status_code for r in refused] == [401, 403]
    assert switched.status_code == 200 and switched.json() == {"enabled": False, "challenger": 9}
    assert [r["request_id"] for r in log.rows()] == [on["request_id"]] + [
        a["request_id"] for a in off
    ]
    assert [r["request_id"] for r in log.rows("shadow_predictions")] == [on["request_id"]]


def test_a_failing_challenger_never_touches_the_champions_answer(
    champion: ServedModel, challenger: ServedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(champion)
    broken = ServedModel(challenger.model, "loans", 9)

    def fail(records: list[dict[str, Any]], *, reasons: bool = True) -> list[dict[str, Any]]:
        raise RuntimeError("challenger exploded")

    monkeypatch.setattr(broken, "score_records", fail)
    app.state.shadow.set_engine(broken)

    answer = TestClient(app).post("/v1/score", json=RECORD)
    app.state.shadow.drain()

    assert answer.status_code == 200, answer.text
    assert answer.json()["probability"] == champion.score_records([RECORD])[0]["probability"]
    assert _sample(app, "keel_shadow_total", outcome="failed") == 1
    assert _sample(app, "keel_shadow_total", outcome="scored") is None


def test_metrics_label_unknown_paths_other_and_count_413s(champion: ServedModel) -> None:
    app = create_app(champion, max_body_bytes=1000)
    client = TestClient(app)
    random_path = f"/x/{uuid.uuid4().hex}"

    statuses = [
        client.post("/v1/nope", json=RECORD).status_code,
        client.get(random_path).status_code,
        client.post(
            "/v1/score",
            content=b"{" + b" " * 2000 + b"}",
            headers={"content-type": "application/json"},
        ).status_code,
    ]
    text = client.get("/metrics").text

    assert statuses == [404, 404, 413]
    assert _sample(app, "keel_requests_total", route="other", status="404") == 2
    assert _sample(app, "keel_requests_total", route="/v1/score", status="413") == 1
    assert "/v1/nope" not in text and random_path not in text


def test_a_chunked_body_over_the_limit_is_a_413(champion: ServedModel) -> None:
    app = create_app(champion, max_body_bytes=1000)

    answer = TestClient(app).post(
        "/v1/score",
        content=iter([b"{", b" " * 2000, b"}"]),  # no content-length
        headers={"content-type": "application/json"},
    )

    assert answer.status_code == 413, answer.text
    assert _sample(app, "keel_requests_total", route="/v1/score", status="413") == 1
