"""The prediction log: rows committed before the answer, surviving kill -9, shedding when behind."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from keel.serving.app import create_app
from keel.serving.predictions import PredictionLog
from keel.serving.served import ServedModel

DECISION = {
    "probability": 0.25,
    "decision": "favourable",
    "reasons": [],
    "model": "m",
    "version": 1,
}


def test_appended_rows_are_there_with_their_inputs_and_decisions(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "p.db")
    log.append(
        "r1",
        "2026-01-01T00:00:00",
        [{"a": 1}, {"a": 2}],
        [DECISION, {**DECISION, "probability": 0.75}],
    )
    log.close()

    rows = PredictionLog(tmp_path / "p.db").rows()

    assert [
        (r["request_id"], r["row"], json.loads(r["inputs"]), r["probability"]) for r in rows
    ] == [("r1", 0, {"a": 1}, 0.25), ("r1", 1, {"a": 2}, 0.75)]


def test_every_acknowledged_row_survives_kill_9(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from keel.serving.predictions import PredictionLog
        log = PredictionLog(Path({str(tmp_path / "p.db")!r}))
        decision = {DECISION!r}
        i = 0
        while True:
            log.append(f"req-{{i}}", "t", [{{"i": i}}], [decision])
            print(f"req-{{i}}", flush=True)  # acknowledged only after append returned
            i += 1
    """)
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    acknowledged = [writer.stdout.readline().strip() for _ in range(300)]
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)

    logged = {r["request_id"] for r in PredictionLog(tmp_path / "p.db").rows()}

    assert set(acknowledged) <= logged


def test_the_api_logs_each_answer_and_sheds_load_when_the_log_is_behind(
    tmp_path: Path, engine: ServedModel
) -> None:
    log = PredictionLog(tmp_path / "p.db")
    client = TestClient(create_app(engine, prediction_log=log))
    record = {"income": 20000, "debt": 30000, "late_payments": 3, "region": "east"}

    answer = client.post("/v1/score", json=record).json()
    [row] = log.rows()

    # A reader holds the database's write lock, so the writer is stuck and its queue fills up.
    behind = PredictionLog(tmp_path / "q.db", max_pending=1)
    blocker = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    assert behind.append_shadow("filler", "t", [record], [DECISION])
    while behind.pending():  # the writer takes it, then waits for the lock
        time.sleep(0.01)
    assert behind.append_shadow("filler", "t", [record], [DECISION])
    assert not behind.append_shadow("filler", "t", [record], [DECISION])
    shed = TestClient(create_app(engine, prediction_log=behind)).post("/v1/score", json=record)
    blocker.execute("COMMIT")
    behind.close()

    assert (row["request_id"], row["probability"], row["version"]) == (
        answer["request_id"],
        answer["probability"],
        3,
    )
    assert (
        shed.status_code == 503
        and shed.headers["retry-after"] == "1"
        and "behind" in shed.json()["detail"]
    )
    assert not any(r["request_id"] != "filler" for r in behind.rows()) and behind.rows(
        "shadow_predictions"
    )


@pytest.fixture(scope="module")
def engine() -> ServedModel:
    from keel.spec import parse_spec
    from keel.training.trainer import train_model

    from factories import loans_spec, make_loans

    raw = loans_spec("unused.csv", tuning={"trials": 2}, models={"families": ["logistic"]})
    return ServedModel(train_model(make_loans(rows=800, seed=2), parse_spec(raw)).model, "loans", 3)
