"""`keel serve` under load, as a real process: hot swaps (some corrupt), kill -9 and SIGTERM.

Two different models alternate as the champion, so an answer's numbers show which model
computed it: an answer that names one version but carries the other's numbers is a mixed
request. Each version's expected answers are computed in process with the same engine.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from keel.registry.store import Registry
from keel.serving.predictions import PredictionLog
from keel.serving.served import ServedModel
from keel.spec import parse_spec
from keel.training.trainer import train_model

from factories import loans_spec, make_loans, register_version
from people import People, enrol
from server_process import Answer, Load, serving, stop, versions_named

pytestmark = pytest.mark.slow

RECORDS = [
    {"income": 20000, "debt": 30000, "late_payments": 3, "region": "east"},
    {"income": 85000, "debt": 1000, "late_payments": 0, "region": "north"},
    {"income": 41000, "debt": 39000, "late_payments": 1, "region": "west"},
    {"income": 12000, "debt": 2500, "late_payments": 6, "region": "south"},
]


@dataclass
class Project:
    folder: Path
    expected: dict[int, list[float]]  # version -> probability of each record
    models: dict[int, str]  # version -> which model ("a" or "b", or "corrupt")
    people: People

    def registry(self) -> Registry:
        return Registry.for_project(self.folder)

    def promote(self, version: int) -> None:
        """Make ``version`` the champion the governed way (every version was approved up front)."""
        governance = self.people.service.governance
        if governance.ledger().model("loans").champion != version:
            governance.promote("loans", version, by=self.people.dep, note="test move")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Project:
    """Versions 1-4 alternate two models (a, b, a, b); 5-9 are registered, then corrupted."""
    import shutil

    folder = tmp_path_factory.mktemp("resilience") / ".keel"
    folder.mkdir()
    shutil.copy(mlflow_template, folder / "mlflow.db")
    raw = loans_spec("unused.csv", tuning={"trials": 1}, models={"families": ["logistic"]})
    saved = {}
    for name, seed in (("a", 2), ("b", 7)):
        model = train_model(make_loans(rows=800, seed=seed), parse_spec(raw)).model
        model.save(folder.parent / name)
        saved[name] = (
            folder.parent / name,
            [d["probability"] for d in ServedModel(model, "loans", 0).score_records(RECORDS)],
        )
    people = enrol(folder)
    governance = people.service.governance
    expected, models = {}, {}
    for name in ["a", "b", "a", "b", "a", "a", "a", "a", "a"]:
        info = register_version(governance, saved[name][0], author=people.dev)
        expected[info.version], models[info.version] = saved[name][1], name
        governance.approve(
            "loans", info.version, by=people.val, note="approved up front for the test"
        )
    for version in range(5, 10):
        _corrupt(governance.registry, version)
        models[version] = "corrupt"
    project = Project(folder, expected, models, people)
    project.promote(1)
    return project


def _corrupt(registry: Registry, version: int) -> None:
    """Change one byte of a registered model's stored file, as a disk fault or an attacker would."""
    from urllib.parse import unquote, urlparse

    folder = Path(unquote(urlparse(registry.version("loans", version).source).path))
    target = next(p for p in sorted(folder.iterdir()) if p.name != "model.json")
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    target.write_bytes(bytes(raw))


def _check_numbers(answer: Answer, project: Project) -> None:
    """The answer's probabilities are exactly those of the version it names."""
    assert answer.body is not None
    [version] = versions_named(answer.body)
    expected = project.expected[version]
    got = (
        [r["probability"] for r in answer.body["results"]]
        if answer.record is None
        else [answer.body["probability"]]
    )
    assert got == (expected if answer.record is None else [expected[answer.record]]), (version, got)


def test_steady_load_through_20_hot_swaps_5_of_them_corrupt(project: Project) -> None:
    # 20 moves of the champion alias, 3 s apart: valid versions alternate models; every 4th is
    # corrupt.
    plan = [2, 3, 4, 5, 1, 2, 3, 6, 4, 1, 2, 7, 3, 4, 1, 8, 2, 3, 9, 4]
    assert len(plan) == 20 and sum(project.models[v] == "corrupt" for v in plan) == 5
    moves: list[tuple[float, int]] = []
    with serving(
        project.folder, "--workers", "2", "--watch-seconds", "0.2", "--drain-seconds", "0"
    ) as server:
        with Load(server.port, RECORDS) as load:
            time.sleep(0.5)
            for version in plan:
                project.promote(version)
                moves.append((time.monotonic(), version))
                time.sleep(3.0)
        output = server.output()
        # A worker counts an answer just after sending it: give the last ones a moment to land.
        deadline = time.monotonic() + 5
        while (
            _answers_counted(metrics := server.get("/metrics")[1]) != len(load.answers)
            and time.monotonic() < deadline
        ):
            time.sleep(0.1)
        stop(server, signal.SIGTERM)

    answers = load.answers
    assert len(answers) > 2000, "the load did not run"
    failures = [a for a in answers if a.status != 200]
    assert not failures, f"{len(failures)} of {len(answers)} answers failed, e.g. {failures[:3]}"
    for answer in answers:
        assert answer.body is not None
        assert len(versions_named(answer.body)) == 1  # a batch is answered by one version
        _check_numbers(answer, project)
    served = {v for a in answers for v in versions_named(a.body or {})}
    assert served == {1, 2, 3, 4} and not served & {
        v for v, m in project.models.items() if m == "corrupt"
    }
    # After each corrupt move (and a second for both workers to try it), the version before it
    # still serves.
    for (moved, version), (next_move, _) in zip(
        moves, [*moves[1:], (float("inf"), 0)], strict=True
    ):
        if project.models[version] == "corrupt":
            before = moves[moves.index((moved, version)) - 1][1]
            later = [a for a in answers if moved + 1.0 < a.sent and a.received < next_move]
            assert later and all(versions_named(a.body or {}) == {before} for a in later), version
    assert output.count("not serving version") >= 5 and "does not match" in output
    # One scrape counts both workers' answers (multiprocess metrics), and shows each worker's
    # version.
    assert _answers_counted(metrics) == len(answers)
    assert sum(line.startswith("keel_model_version{") for line in metrics.splitlines()) == 2


def test_every_answer_acknowledged_before_kill_9_is_in_the_log(project: Project) -> None:
    project.promote(1)
    with serving(project.folder, "--workers", "2", "--watch-seconds", "0") as server:
        with Load(server.port, RECORDS, threads=6) as load:
            time.sleep(5)
            stop(server, signal.SIGKILL)  # supervisor and both workers, mid-request
        killed_at = time.monotonic()

    acknowledged = {
        a.body["request_id"] for a in load.answers if a.status == 200 and a.received < killed_at
    }
    assert len(acknowledged) > 200
    with serving(
        project.folder, "--watch-seconds", "0"
    ) as restarted:  # the log opens again after the crash
        status, _ = restarted.get("/readyz")
        logged = {
            row["request_id"] for row in PredictionLog(project.folder / "predictions.db").rows()
        }
    assert status == 200
    assert acknowledged <= logged, (
        f"{len(acknowledged - logged)} acknowledged answers are not in the log"
    )


def test_sigterm_drains_then_answers_every_request_in_flight(project: Project) -> None:
    project.promote(2)
    with serving(project.folder, "--watch-seconds", "0", "--drain-seconds", "1.5") as server:
        # Hold the log's write lock: requests now wait in flight for their commit.
        blocker = sqlite3.connect(
            project.folder / "predictions.db", isolation_level=None, timeout=30
        )
        blocker.execute("BEGIN EXCLUSIVE")
        in_flight: list[Any] = []
        senders = [
            threading.Thread(target=lambda r=r: in_flight.append(_post(server.port, r)))
            for r in RECORDS * 2
        ]
        for sender in senders:
            sender.start()
        _wait_until(lambda: "keel_in_flight 8.0" in server.get("/metrics")[1])

        server.process.send_signal(signal.SIGTERM)
        _wait_until(lambda: server.get("/readyz")[0] == 503)
        readiness = server.get("/readyz")
        time.sleep(2.0)  # past the drain: uvicorn is now finishing the requests in flight
        still_running = server.process.poll() is None
        blocker.execute("COMMIT")
        for sender in senders:
            sender.join(timeout=30)
        code = server.process.wait(timeout=60)

    assert readiness == (503, {"status": "draining"})
    assert still_running and code in (0, -signal.SIGTERM)
    assert sorted(status for status, _ in in_flight) == [200] * 8
    logged = {row["request_id"] for row in PredictionLog(project.folder / "predictions.db").rows()}
    assert {body["request_id"] for _, body in in_flight} <= logged


def _answers_counted(metrics: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("keel_requests_total{")
        and 'status="200"' in line
        and '"/v1/score' in line
    )


def _post(port: int, record: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    import http.client
    import json

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request(
        "POST", "/v1/score", json.dumps(record), {"content-type": "application/json"}
    )
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def _wait_until(condition: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_the_challenger_alias_is_scored_in_the_shadow_and_logged(project: Project) -> None:
    project.promote(1)
    governance = (
        project.people.service.governance
    )  # the other model: its numbers differ from the champion's
    governance.set_challenger("loans", 2, by=project.people.dev, reason="shadow test")
    with serving(project.folder, "--watch-seconds", "0.2", "--drain-seconds", "0") as server:
        _wait_until(lambda: "keel_shadow_version 2.0" in server.get("/metrics")[1])
        answers = [_post(server.port, record) for record in RECORDS]
        stop(
            server, signal.SIGTERM
        )  # the lifespan scores what is queued and commits it before exiting

    log = PredictionLog(project.folder / "predictions.db")
    shadow = {row["request_id"]: row for row in log.rows("shadow_predictions")}
    for i, (status, body) in enumerate(answers):
        assert (
            status == 200 and body["version"] == 1 and body["probability"] == project.expected[1][i]
        )
        assert shadow[body["request_id"]]["version"] == 2
        assert (
            shadow[body["request_id"]]["probability"]
            == project.expected[2][i]
            != project.expected[1][i]
        )


def test_an_mlflow_alias_moved_under_load_is_never_served_and_raises_an_alert(
    project: Project,
) -> None:
    """The insider's alias bypass, replayed while serving.

    MLflow's champion alias is moved to another version.
    """
    project.promote(1)
    registry = project.registry()
    with serving(
        project.folder, "--workers", "2", "--watch-seconds", "0.2", "--drain-seconds", "0"
    ) as server:
        with Load(server.port, RECORDS) as load:
            time.sleep(0.5)
            for version in (2, 3, 2, 4):
                registry.set_alias("loans", "champion", version)  # what the MLflow UI offers anyone
                time.sleep(1.5)
            metrics = server.get("/metrics")[1]
        output = server.output()
        stop(server, signal.SIGTERM)

    answers = load.answers
    assert len(answers) > 500, "the load did not run"
    assert all(a.status == 200 for a in answers)
    assert {v for a in answers for v in versions_named(a.body or {})} == {
        1
    }  # 0 answers by another version
    for answer in answers:
        _check_numbers(answer, project)
    assert "ALERT: MLflow alias loans@champion points at version" in output
    assert any(
        line.startswith("keel_alias_mismatch{")
        and 'alias="champion"' in line
        and line.endswith(" 4.0")
        for line in metrics.splitlines()
    ), metrics
