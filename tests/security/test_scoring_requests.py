"""Scoring takes JSON only, and answers only its own host names by default (issue 15, finding 8)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from keel.serving.app import create_app
from keel.serving.predictions import PredictionLog
from keel.serving.served import ServedModel
from keel.serving.server import default_allowed_hosts

from factories import small_engine

RECORD = {"income": 20000, "debt": 30000, "late_payments": 3, "region": "east"}


@pytest.fixture(scope="module")
def engine() -> ServedModel:
    return small_engine()


@pytest.mark.parametrize(
    "media",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
def test_a_cross_site_form_cannot_score_or_write_to_the_log(
    engine: ServedModel, tmp_path, media
) -> None:
    log = PredictionLog(tmp_path / "predictions.db")
    client = TestClient(create_app(engine, prediction_log=log))
    headers = {"content-type": media} if media else {}
    for path in ("/v1/score", "/v1/score/batch"):
        body = json.dumps(RECORD if path == "/v1/score" else {"records": [RECORD]})
        answer = client.post(path, content=body, headers=headers)
        assert answer.status_code == 415 and "application/json" in answer.json()["detail"]
    assert log.rows() == []
    ok = client.post(
        "/v1/score",
        content=json.dumps(RECORD),
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert ok.status_code == 200 and len(log.rows()) == 1
    log.close()


def test_a_server_bound_to_loopback_answers_only_loopback_host_names(engine: ServedModel) -> None:
    assert default_allowed_hosts("0.0.0.0") == []  # every address: the operator names the hosts
    assert default_allowed_hosts("10.1.2.3") == ["10.1.2.3"]
    client = TestClient(
        create_app(engine, allowed_hosts=default_allowed_hosts("127.0.0.1")),
        base_url="http://127.0.0.1:8000",
    )
    assert client.post("/v1/score", json=RECORD).status_code == 200
    assert (
        client.post("/v1/score", json=RECORD, headers={"host": "localhost:8000"}).status_code == 200
    )
    assert (
        client.post("/v1/score", json=RECORD, headers={"host": "attacker.example"}).status_code
        == 400
    )


def test_an_integer_beyond_int64_is_a_422_not_a_server_error(engine: ServedModel, tmp_path) -> None:
    # Found by schemathesis: 2**64 passed validation; the prediction log could not store it (500).
    log = PredictionLog(tmp_path / "predictions.db")
    client = TestClient(create_app(engine, prediction_log=log))
    for income in (2**64, -(2**63) - 1):
        answer = client.post("/v1/score", json={**RECORD, "income": income})
        assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "income"]
    assert client.post("/v1/score", json={**RECORD, "income": 2**63 - 1}).status_code == 200
    assert len(log.rows()) == 1
    log.close()
