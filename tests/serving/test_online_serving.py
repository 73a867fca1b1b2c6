"""Online features in the API: raw transactions in, offline features out, row for row, over HTTP.

A replay sends every transaction in time order to ``POST /v1/score`` (single records and
small batches) and each label to ``POST /v1/labels`` a day after its transaction; the
features the server computed (kept in the prediction log) must equal the offline ones,
and so must the probabilities.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from keel.cli.main import app
from keel.features.offline import add_features, compute_features
from keel.features.stores import MemoryStore, RedisStore
from keel.features.windows import FeaturePlan
from keel.lifecycle.run import run_project
from keel.serving.app import create_app
from keel.serving.loader import load_alias
from keel.serving.predictions import Overloaded, PredictionLog
from keel.serving.served import ServedModel
from keel.spec import load_spec, parse_spec
from keel.training.trainer import train_model

from factories import make_transactions, transactions_spec, write_project
from feature_checks import assert_same_features
from people import crown, enrol
from server_process import serving

KEY = {"X-API-Key": "labels-key"}
LABEL_DELAY = pd.Timedelta("1d")  # the shortest delay of a window over the label


@pytest.fixture(scope="module")
def spec():
    return parse_spec(
        {**transactions_spec(), "tuning": {"trials": 2}, "models": {"families": ["lightgbm"]}}
    )


@pytest.fixture(scope="module")
def engine(spec) -> ServedModel:
    frame = make_transactions(3000, seed=21, days=12)
    return ServedModel(train_model(add_features(frame, spec), spec).model, "fraud", 1)


def _client(engine: ServedModel, tmp_path: Path, store=None) -> tuple[TestClient, PredictionLog]:
    log = PredictionLog(tmp_path / "predictions.db")
    return TestClient(
        create_app(engine, api_key=KEY["X-API-Key"], prediction_log=log, feature_store=store)
    ), log


def _raw(row: dict) -> dict:
    """A transaction as a client sends it: no label, time as ISO text, a missing amount as null."""
    amount = None if pd.isna(row["amount"]) else float(row["amount"])
    return {
        "tx_id": int(row["tx_id"]),
        "tx_time": row["tx_time"].isoformat(),
        "card": int(row["card"]),
        "terminal": int(row["terminal"]),
        "amount": amount,
        "channel": row["channel"],
    }


def _replay_over_http(client: TestClient, frame: pd.DataFrame, seed: int) -> list[float]:
    """Score every row in time order (batches of 1 to 4); due labels are sent before the batch."""
    rows = frame.to_dict("records")
    rng = np.random.default_rng(seed)
    probabilities: list[float] = []
    labelled = 0
    start = 0
    while start < len(rows):
        batch = rows[start : start + int(rng.integers(1, 5))]
        # A label due by the batch's last time may arrive before the batch: no window reads it
        # earlier than its due time, since every window over the label is delayed at least that
        # long.
        due = [
            r for r in rows[labelled:start] if r["tx_time"] + LABEL_DELAY <= batch[-1]["tx_time"]
        ]
        if due:
            answer = client.post(
                "/v1/labels",
                headers=KEY,
                json={
                    "labels": [
                        {
                            "tx_id": int(r["tx_id"]),
                            "card": int(r["card"]),
                            "terminal": int(r["terminal"]),
                            "fraud": int(r["fraud"]),
                        }
                        for r in due
                    ]
                },
            )
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"updated": len(due), "unknown": []}
            labelled += len(due)
        if len(batch) == 1:
            answer = client.post("/v1/score", json=_raw(batch[0]))
            assert answer.status_code == 200, answer.text
            probabilities.append(answer.json()["probability"])
        else:
            answer = client.post("/v1/score/batch", json={"records": [_raw(r) for r in batch]})
            assert answer.status_code == 200, answer.text
            probabilities += [r["probability"] for r in answer.json()["results"]]
        start += len(batch)
    return probabilities


def _check_replay(
    engine: ServedModel, spec, frame: pd.DataFrame, log: PredictionLog, probabilities: list[float]
) -> None:
    plan = FeaturePlan.of(spec)
    logged = [json.loads(r["inputs"]) for r in log.rows()]
    assert [r["tx_id"] for r in logged] == frame["tx_id"].tolist()
    served = {
        name: np.array([np.nan if r[name] is None else r[name] for r in logged])
        for name in plan.names()
    }
    assert_same_features(compute_features(frame, plan), served, plan, {"amount"})
    offline = [
        d["probability"] for d in engine.score_frame(add_features(frame, spec), reasons=False)
    ]
    np.testing.assert_allclose(probabilities, offline, rtol=1e-12, atol=0)


def test_a_replay_over_http_equals_offline_in_memory(
    engine: ServedModel, spec, tmp_path: Path
) -> None:
    frame = make_transactions(1500, seed=22, days=8)
    client, log = _client(engine, tmp_path)
    with client:
        probabilities = _replay_over_http(client, frame, seed=1)
    _check_replay(engine, spec, frame, log, probabilities)
    labels = log.rows("labels")
    assert len(labels) == (frame["tx_time"] + LABEL_DELAY <= frame["tx_time"].iloc[-1]).sum()
    assert json.loads(labels[0]["labels"]) == {
        "tx_id": 0,
        "card": int(frame["card"][0]),
        "terminal": int(frame["terminal"][0]),
        "fraud": int(frame["fraud"][0]),
    }
    log.close()


def test_a_replay_over_http_equals_offline_with_a_real_redis(
    engine: ServedModel, spec, tmp_path: Path, redis_url: str
) -> None:
    frame = make_transactions(600, seed=23, days=5)
    store = RedisStore(redis_url, prefix="http-replay")
    client, log = _client(engine, tmp_path, store)
    with client:
        probabilities = _replay_over_http(client, frame, seed=2)
    store.close()
    _check_replay(engine, spec, frame, log, probabilities)
    log.close()


def test_requests_and_labels_are_checked(engine: ServedModel, tmp_path: Path) -> None:
    client, log = _client(engine, tmp_path, MemoryStore())
    row = _raw(make_transactions(1, seed=3).to_dict("records")[0])
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert set(schema["Record"]["properties"]) == {
        "tx_id",
        "tx_time",
        "card",
        "terminal",
        "amount",
        "channel",
    }
    missing = client.post("/v1/score", json={k: v for k, v in row.items() if k != "card"})
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "card"]
    assert (
        client.post("/v1/score", json={**row, "card_nb_1d": 3.0}).status_code == 422
    )  # computed, never given
    assert client.post("/v1/score", json={**row, "tx_time": "yesterday"}).status_code == 422
    assert client.post("/v1/score", json=row).status_code == 200

    label = {"tx_id": row["tx_id"], "card": row["card"], "terminal": row["terminal"], "fraud": 1}
    assert client.post("/v1/labels", json={"labels": [label]}).status_code == 401
    assert (
        client.post("/v1/labels", headers=KEY, json={"labels": [{**label, "fraud": 2}]}).status_code
        == 422
    )
    answer = client.post(
        "/v1/labels", headers=KEY, json={"labels": [label, {**label, "tx_id": 999_999}]}
    )
    assert answer.json() == {"updated": 1, "unknown": [999_999]}
    assert [json.loads(r["labels"])["tx_id"] for r in log.rows("labels")] == [row["tx_id"], 999_999]
    log.close()


def test_an_unreachable_feature_store_is_a_503_and_nothing_is_logged(
    engine: ServedModel, tmp_path: Path
) -> None:
    client, log = _client(engine, tmp_path, RedisStore("redis://127.0.0.1:9/0", timeout=0.5))
    answer = client.post("/v1/score", json=_raw(make_transactions(1, seed=3).to_dict("records")[0]))
    assert answer.status_code == 503 and "unreachable" in answer.json()["detail"]
    assert log.rows() == []
    log.close()


def test_a_version_with_other_feature_definitions_is_not_swapped_in(
    engine: ServedModel, tmp_path: Path
) -> None:
    client, log = _client(engine, tmp_path)
    other = dataclasses.replace(engine.model, metadata=copy.deepcopy(engine.model.metadata))
    other.metadata["features"]["windows"][0]["delay_us"] += 1  # same names and inputs, another rule
    with pytest.raises(HTTPException) as refused:
        client.app.state.check_contract(ServedModel(other, "fraud", 2), "still serving version 1")
    assert refused.value.status_code == 409
    log.close()


@pytest.mark.slow
def test_keel_serve_with_two_workers_shares_the_events_in_redis(
    tmp_path: Path, mlflow_template: Path, redis_url: str
) -> None:
    """The production layout: two worker processes, one Redis.

    A sequential client alternates between the workers.
    """
    frame = make_transactions(300, seed=24, days=4)
    raw = {
        **transactions_spec("data.csv"),
        "tuning": {"trials": 2},
        "models": {"families": ["lightgbm"]},
    }
    spec_path = write_project(tmp_path / "tx", frame, raw)
    project_dir = spec_path.parent / ".keel"
    project_dir.mkdir()
    shutil.copy(mlflow_template, project_dir / "mlflow.db")
    people = enrol(project_dir)
    run_project(
        load_spec(spec_path), project_dir=project_dir, principal=people.dev, with_card=False
    )
    crown(people, "transactions", 1)

    private = CliRunner().invoke(
        app,
        ["serve", "--project-dir", str(project_dir), "--model", "transactions", "--workers", "2"],
    )
    assert private.exit_code == 2 and "--feature-store redis://" in private.output

    with (
        serving(
            project_dir,
            "--workers",
            "2",
            "--feature-store",
            redis_url,
            model="transactions",
            api_key=KEY["X-API-Key"],
        ) as server,
        httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as client,
    ):
        probabilities = _replay_over_http(client, frame, seed=3)
    log = PredictionLog(project_dir / "predictions.db")
    _check_replay(
        load_alias(people.service.governance, "transactions"),
        parse_spec(raw),
        frame,
        log,
        probabilities,
    )
    log.close()


def _engine_for(spec_changes: dict) -> tuple[ServedModel, object]:
    raw = {
        **transactions_spec(**spec_changes),
        "tuning": {"trials": 1},
        "models": {"families": ["logistic"]},
    }
    spec = parse_spec(raw)
    frame = make_transactions(800, seed=31, days=6)
    return ServedModel(train_model(add_features(frame, spec), spec).model, "fraud", 1), spec


def test_a_model_with_calendar_features_only_takes_the_time_and_keeps_no_events(
    tmp_path: Path,
) -> None:
    engine, _ = _engine_for({"windows": {}})
    client, log = _client(engine, tmp_path)
    row = _raw(make_transactions(1, seed=3).to_dict("records")[0])
    fields = client.get("/openapi.json").json()["components"]["schemas"]["Record"]["properties"]
    assert set(fields) == {"tx_time", "amount"}  # the id and entities serve no feature here
    assert (
        client.post("/v1/score", json={"tx_time": row["tx_time"], "amount": 5.0}).status_code == 200
    )
    assert client.post("/v1/labels", headers=KEY, json={"labels": []}).status_code == 404
    assert json.loads(log.rows()[0]["inputs"])["is_weekend"] in (0.0, 1.0)
    log.close()


def test_labels_no_window_reads_are_logged_and_change_no_event(tmp_path: Path) -> None:
    engine, _ = _engine_for(
        {
            "windows": {
                "card": {
                    "entity": "card",
                    "windows": ["1d"],
                    "aggregations": {"nb": {"function": "count"}},
                }
            }
        }
    )
    store = MemoryStore()
    client, log = _client(engine, tmp_path, store)
    row = _raw(make_transactions(1, seed=3).to_dict("records")[0])
    assert (
        client.post(
            "/v1/score", json={k: row[k] for k in ("tx_id", "tx_time", "card", "amount")}
        ).status_code
        == 200
    )
    answer = client.post(
        "/v1/labels",
        headers=KEY,
        json={"labels": [{"tx_id": row["tx_id"], "card": row["card"], "fraud": 1}]},
    )
    assert answer.json() == {"updated": 0, "unknown": []}
    assert json.loads(log.rows("labels")[0]["labels"])["fraud"] == 1 and store.size() == 1
    log.close()


def test_a_refused_request_leaves_no_event_behind(
    engine: ServedModel, tmp_path: Path, monkeypatch
) -> None:
    store = MemoryStore()
    client, log = _client(engine, tmp_path, store)
    rows = [_raw(r) for r in make_transactions(3, seed=8).to_dict("records")]

    async def behind(*_: object) -> None:
        raise Overloaded("the prediction log is behind; try again shortly")

    monkeypatch.setattr(log, "append_async", behind)
    assert client.post("/v1/score/batch", json={"records": rows}).status_code == 503
    assert store.size() == 0  # the next transactions' counts do not include an unanswered one
    monkeypatch.undo()
    assert client.post("/v1/score/batch", json={"records": rows}).status_code == 200
    assert store.size() == 3 * 2  # each transaction kept once per entity (card, terminal)
    log.close()
