"""A prediction log deleted or replaced while serving is noticed at once: no answer is acknowledged
without a durable row, and readiness fails (issue 15, finding 7)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from keel.serving.app import create_app
from keel.serving.predictions import PredictionLog
from keel.serving.served import ServedModel

from factories import small_engine

RECORD = {"income": 20000, "debt": 30000, "late_payments": 3, "region": "east"}


@pytest.fixture(scope="module")
def engine() -> ServedModel:
    return small_engine()


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_no_acknowledgement_after_the_log_is_deleted_or_replaced(
    engine: ServedModel, tmp_path: Path, how: str
) -> None:
    path = tmp_path / "predictions.db"
    log = PredictionLog(path)
    client = TestClient(create_app(engine, prediction_log=log))
    assert client.post("/v1/score", json=RECORD).status_code == 200
    assert client.get("/readyz").status_code == 200
    if how == "deleted":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        shutil.copy(path, tmp_path / "copy.db")
        (tmp_path / "copy.db").replace(path)

    answers = [client.post("/v1/score", json=RECORD) for _ in range(30)]

    assert [a.status_code for a in answers] == [503] * 30
    assert "deleted or replaced" in answers[0].json()["detail"]
    assert client.get("/readyz").status_code == 503
    log.close()
    reopened = PredictionLog(
        path
    )  # what a restart does: every row acknowledged before is there, none after
    assert len(reopened.rows()) == (0 if how == "deleted" else 1)
    reopened.close()
