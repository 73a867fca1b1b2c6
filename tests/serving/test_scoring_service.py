"""The scoring service without HTTP: raw bodies in, status and answer out.

The log is written, and swaps are refused or kept.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keel.errors import IntegrityError
from keel.serving.predictions import PredictionLog
from keel.serving.scoring import INLINE_RECORDS, SCORE_BATCH, SCORE_ONE, Refused, ScoringService
from keel.serving.served import ServedModel

from factories import make_loans, small_engine

RECORD = {"income": 20000, "debt": 30000, "late_payments": 3, "region": "east"}


@pytest.fixture(scope="module")
def engine() -> ServedModel:
    return small_engine(version=1)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[PredictionLog]:
    log = PredictionLog(tmp_path / "p.db")
    yield log
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


def _body(content: dict[str, Any]) -> bytes:
    return json.dumps(content).encode()


def _other_contract(engine: ServedModel, version: int) -> ServedModel:
    """The same model, but one input's rule differs: another request schema."""
    model = dataclasses.replace(engine.model, metadata=copy.deepcopy(engine.model.metadata))
    model.metadata["contract"]["late_payments"]["max"] += 1
    return ServedModel(model, engine.name, version)


def test_one_record_gets_the_engines_answer_and_is_logged_under_its_request_id(
    engine: ServedModel, log: PredictionLog
) -> None:
    service = ScoringService(engine, prediction_log=log)

    status, content = asyncio.run(service.score(SCORE_ONE, _body(RECORD)))
    [row] = log.rows()

    assert status == 200
    assert content == {"request_id": content["request_id"], **engine.score_records([RECORD])[0]}
    assert (row["request_id"], row["probability"], json.loads(row["inputs"])) == (
        content["request_id"],
        content["probability"],
        RECORD,
    )


def test_a_batch_in_the_thread_pool_answers_every_record_in_order(
    engine: ServedModel, log: PredictionLog
) -> None:
    service = ScoringService(engine, prediction_log=log)
    records = _records(INLINE_RECORDS + 4)  # over the inline limit: scored in the thread pool

    status, content = asyncio.run(service.score(SCORE_BATCH, _body({"records": records})))

    assert status == 200 and content["results"] == engine.score_records(records)
    rows = [(r["request_id"], r["row"]) for r in log.rows()]
    assert rows == [(content["request_id"], i) for i in range(len(records))]
    assert service.metrics.registry.get_sample_value("keel_score_count") == len(records)


def test_a_body_breaking_the_contract_is_422_naming_the_field_without_its_value(
    engine: ServedModel, log: PredictionLog
) -> None:
    service = ScoringService(engine, prediction_log=log)

    status, content = asyncio.run(
        service.score(SCORE_ONE, _body({**RECORD, "late_payments": 31337}))
    )

    assert status == 422
    assert [problem["loc"] for problem in content["detail"]] == [["body", "late_payments"]]
    assert "31337" not in json.dumps(content)
    assert log.rows() == []


def test_a_swap_serves_the_reloaded_version_to_later_requests(engine: ServedModel) -> None:
    service = ScoringService(engine, reload=lambda: ServedModel(engine.model, engine.name, 2))

    assert service.swap() == {"previous": 1, "serving": 2}
    _, content = asyncio.run(service.score(SCORE_ONE, _body(RECORD)))
    assert content["version"] == 2
    assert service.metrics.registry.get_sample_value("keel_model_version", {"model": "loans"}) == 2


def test_a_failed_reload_keeps_the_current_version(engine: ServedModel) -> None:
    def reload() -> ServedModel:
        raise IntegrityError("sha256 does not match")

    service = ScoringService(engine, reload=reload)

    with pytest.raises(
        Refused, match="reload failed, still serving version 1: sha256 does not match"
    ) as refused:
        service.swap()
    assert refused.value.status == 409 and service.engine is engine


def test_a_candidate_reading_other_inputs_is_refused(engine: ServedModel) -> None:
    other = _other_contract(engine, version=2)
    service = ScoringService(engine, reload=lambda: other)

    with pytest.raises(
        Refused, match="version 2 reads other inputs; still serving version 1"
    ) as refused:
        service.swap()
    with pytest.raises(Refused, match="version 2 reads other inputs; not scoring it in the shadow"):
        service.check_contract(other, "not scoring it in the shadow")
    assert refused.value.status == 409 and service.engine is engine


def test_a_log_that_is_behind_is_503_and_keeps_nothing(engine: ServedModel, tmp_path: Path) -> None:
    behind = PredictionLog(tmp_path / "q.db", max_pending=1)
    blocker = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # the writer cannot commit, so its queue fills up
    assert behind.append_shadow("filler", "t", [RECORD], engine.score_records([RECORD]))
    while behind.pending():  # the writer takes it, then waits for the lock
        time.sleep(0.01)
    assert behind.append_shadow("filler", "t", [RECORD], engine.score_records([RECORD]))
    service = ScoringService(engine, prediction_log=behind)

    status, content = asyncio.run(service.score(SCORE_ONE, _body(RECORD)))
    blocker.execute("COMMIT")
    blocker.close()
    behind.close()

    assert (status, content) == (503, {"detail": "the prediction log is behind; try again shortly"})
    assert service.metrics.registry.get_sample_value("keel_shed_total", {"reason": "log"}) == 1
    assert (
        behind.rows() == [] and service.metrics.registry.get_sample_value("keel_score_count") == 0
    )
