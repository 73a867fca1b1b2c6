"""Shared fixtures: small synthetic projects, pre-migrated MLflow stores and a real PostgreSQL."""

from __future__ import annotations

import http.server
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from backends import BACKENDS, Store, create_mlflow_tables
from factories import loans_spec, make_loans, write_project
from postgres_server import PostgresServer, Unavailable
from redis_server import RedisServer
from redis_server import Unavailable as RedisUnavailable

# CI runs the same examples every time (a failure there reproduces); locally, Hypothesis explores.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

_database_numbers = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker of tests that need the PostgreSQL server (select with -m postgres)."""
    config.addinivalue_line(
        "markers", "postgres: runs against a real PostgreSQL server the session starts"
    )


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its tables created once (migrations take ~10 s each time)."""
    folder = tmp_path_factory.mktemp("mlflow-template")
    create_mlflow_tables(f"sqlite:///{folder / 'mlflow.db'}")
    return folder / "mlflow.db"


@pytest.fixture
def loans_project(tmp_path: Path, mlflow_template: Path) -> Path:
    """A project folder with loans data, its spec and a ready .keel store; returns the spec path."""
    spec_path = write_project(tmp_path / "loans", make_loans(), loans_spec("data.csv"))
    keel_dir = spec_path.parent / ".keel"
    keel_dir.mkdir()
    shutil.copy(mlflow_template, keel_dir / "mlflow.db")
    return spec_path


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL 15 server for the session; a skip where none can run, but a failure under CI."""
    try:
        server = PostgresServer.start()
    except Unavailable as error:
        why = str(error)
    else:
        yield server
        server.stop()
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the PostgreSQL tests, but {why}", pytrace=False)
    pytest.skip(f"no PostgreSQL server here: {why}")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server for the session; skipped where none can run, but a failure under CI."""
    try:
        server = RedisServer.start()
    except RedisUnavailable as error:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Redis tests, but {error}", pytrace=False)
        pytest.skip(f"no Redis server here: {error}")
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def dask_engine() -> Iterator[object]:
    """A real ``distributed.LocalCluster`` of 2 worker processes for the session, as an Engine."""
    import logging

    from keel.engine import open_engine

    logging.getLogger("distributed.shuffle").setLevel(logging.ERROR)
    with open_engine("local", workers=2) as engine:
        yield engine


@pytest.fixture(scope="session")
def postgres_mlflow_template(postgres: PostgresServer) -> str:
    """A PostgreSQL database with MLflow's tables, migrated once, to copy per test."""
    url = postgres.create_database("mlflow_template")
    subprocess.run([sys.executable, str(Path(__file__).with_name("backends.py")), url], check=True)
    return "mlflow_template"


def _database_name() -> str:
    """A database name not used before in this session."""
    return f"test_{next(_database_numbers)}"


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a fresh database on the PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return request.getfixturevalue("postgres").create_database(_database_name())


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """Registry and governance tables (MLflow's already created) on one backend; local artifacts."""
    project_dir = tmp_path / ".keel"
    project_dir.mkdir()
    if request.param == "sqlite":
        from keel.registry.governance import default_governance_uri
        from keel.registry.store import default_tracking_uri

        shutil.copy(request.getfixturevalue("mlflow_template"), project_dir / "mlflow.db")
        return Store(
            project_dir, default_tracking_uri(project_dir), default_governance_uri(project_dir)
        )
    server: PostgresServer = request.getfixturevalue("postgres")
    url = server.create_database(
        _database_name(), template=request.getfixturevalue("postgres_mlflow_template")
    )
    return Store(project_dir, url, url)


@pytest.fixture(scope="session")
def saved_model(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Path:
    """A loans model trained once for the session and saved as a Keel artifact folder."""
    from keel.lifecycle.run import run_project
    from keel.registry.store import Registry
    from keel.spec import load_spec

    folder = tmp_path_factory.mktemp("saved-model")
    spec = loans_spec("data.csv", tuning={"trials": 1}, models={"families": ["logistic"]})
    spec_path = write_project(folder / "loans", make_loans(), spec)
    keel_dir = spec_path.parent / ".keel"
    keel_dir.mkdir()
    shutil.copy(mlflow_template, keel_dir / "mlflow.db")
    result = run_project(load_spec(spec_path), project_dir=keel_dir, with_card=False)
    model, _ = Registry.for_project(keel_dir).load_model(result.model_name, result.version)
    model.save(folder / "model")
    return folder / "model"


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[dict]]]:
    """An HTTP endpoint on loopback that records the JSON bodies POSTed to it: (url, bodies).

    Loopback is refused for webhooks unless the operator allows it: the test is the operator here.
    """
    monkeypatch.setenv("KEEL_WEBHOOK_HOSTS", "127.0.0.1")
    received: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received
    server.shutdown()
    server.server_close()
