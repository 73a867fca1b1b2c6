"""The governance service bounds request bodies and heads like the scoring API.

Issue 15, findings 2 and 3.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from keel.server.api import MAX_BODY_BYTES, create_governance_app

from people import enrol
from server_process import governance_server


def test_a_body_over_the_limit_is_413_before_it_is_parsed(tmp_path: Path) -> None:
    people = enrol(tmp_path / ".keel")
    client = TestClient(create_governance_app(people.service))
    headers = {
        "authorization": f"Bearer {people.tokens['vera']}",
        "content-type": "application/json",
    }
    note = json.dumps({"note": "x" * MAX_BODY_BYTES})
    refused = client.post("/api/v1/models/loans/versions/1/approve", content=note, headers=headers)
    assert refused.status_code == 413 and f"{MAX_BODY_BYTES} bytes" in refused.json()["detail"]
    assert refused.headers["connection"] == "close"
    assert not [
        row for row in people.service.governance.audit.rows() if row.action.startswith("approve")
    ]


@pytest.mark.slow
def test_keel_server_refuses_an_oversized_head_with_431(tmp_path: Path) -> None:
    project_dir = tmp_path / ".keel"
    enrol(project_dir)
    head = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
    with (
        governance_server(project_dir) as (_, port),
        socket.create_connection(("127.0.0.1", port), timeout=10) as connection,
    ):
        connection.sendall(head)
        status = connection.recv(4096).split(b"\r\n")[0]
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
