"""`keel serve` end to end: a real uvicorn process on a free loopback port serving the champion."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from keel.cli.main import app
from keel.lifecycle.run import run_project
from keel.spec import load_spec

from people import crown, enrol

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_keel_serve_answers_like_keel_score_and_stops_cleanly_on_sigterm(
    loans_project: Path,
) -> None:
    project_dir = loans_project.parent / ".keel"
    people = enrol(project_dir)
    run_project(
        load_spec(loans_project), project_dir=project_dir, principal=people.dev, with_card=False
    )
    crown(people, "loans", 1)
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "keel",
            "serve",
            "--spec",
            str(loans_project),
            "--project-dir",
            str(project_dir),
            "--port",
            str(port),
        ],
        env={**os.environ, "KEEL_API_KEY": "k"},
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (
                server.stderr.read() if server.stderr else ""
            )
            time.sleep(0.3)

        record = {"income": 20000, "debt": 30000, "late_payments": 3, "region": "east"}
        answer = httpx.post(f"{base}/v1/score", json=record).json()
        reload = httpx.post(f"{base}/admin/reload", headers={"x-api-key": "k"}).json()
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)

    source = loans_project.parent / "to_score.csv"
    pd.DataFrame([{"loan_id": 7, **record}]).to_csv(source, index=False)
    scored = CliRunner().invoke(
        app,
        [
            "score",
            "--spec",
            str(loans_project),
            "--project-dir",
            str(project_dir),
            "--input",
            str(source),
            "--output",
            str(source.with_suffix(".parquet")),
            "--keep",
            "loan_id",
        ],
    )
    batch = pd.read_parquet(source.with_suffix(".parquet")).iloc[0]

    assert scored.exit_code == 0, scored.output
    assert "scored 1 rows with loans version 1" in scored.output and "peak RSS" in scored.output
    assert answer["version"] == 1 and 0 < answer["probability"] < 1 and answer["reasons"]
    assert (
        batch["probability"] == answer["probability"]
        and json.loads(batch["reasons"]) == answer["reasons"]
    )
    assert reload == {"previous": 1, "serving": 1}
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after its graceful shutdown
