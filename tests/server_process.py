"""A real `keel serve` process on a free loopback port.

And a plain HTTP load that records every answer.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int
    log_file: Path

    def get(self, path: str) -> tuple[int, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            return response.status, json.loads(body) if body.startswith(b"{") else body.decode()
        finally:
            connection.close()

    def output(self) -> str:
        return self.log_file.read_text()


def start(project_dir: Path, *options: str, api_key: str = "k", model: str = "loans") -> Server:
    """Start `keel serve` on ``model`` of ``project_dir`` and wait until /readyz answers 200."""
    port = free_port()
    log_file = project_dir / f"serve-{port}.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "keel",
            "serve",
            "--project-dir",
            str(project_dir),
            "--model",
            model,
            "--port",
            str(port),
            *options,
        ],
        env={**os.environ, "KEEL_API_KEY": api_key},
        stdout=log_file.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )  # its own process group: the test can kill the supervisor and workers at once
    server = Server(process, port, log_file)
    deadline = time.monotonic() + 120
    while True:
        try:
            if server.get("/readyz")[0] == 200:
                return server
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop(server, signal.SIGKILL)
            raise AssertionError(f"keel serve did not become ready:\n{server.output()}")
        time.sleep(0.2)


def stop(server: Server, sig: int = signal.SIGKILL) -> int:
    """Send ``sig`` to the server's whole process group and wait for the supervisor to end."""
    with suppress(ProcessLookupError):
        os.killpg(server.process.pid, sig)
    return server.process.wait(timeout=90)


@contextmanager
def serving(
    project_dir: Path, *options: str, model: str = "loans", api_key: str = "k"
) -> Iterator[Server]:
    server = start(project_dir, *options, model=model, api_key=api_key)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            stop(server)


@contextmanager
def governance_server(project_dir: Path) -> Iterator[tuple[str, int]]:
    """Run `keel server` on ``project_dir`` on a free loopback port; yield its URL and port once
    /livez answers, and stop it afterwards."""
    import urllib.request

    port = free_port()
    command = [sys.executable, "-m", "keel", "server", "--project-dir", str(project_dir)]
    process = subprocess.Popen([*command, "--port", str(port)], stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/livez", timeout=2):  # noqa: S310 - loopback http
                    break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
                time.sleep(0.3)
        yield url, port
    finally:
        process.terminate()
        process.wait(timeout=30)


@dataclass
class Answer:
    sent: float
    received: float
    status: int
    body: dict[str, Any] | None
    record: int | None  # which record a single request sent; None for a batch of all of them
    error: str | None = None


@dataclass
class Load:
    """Client threads, each with one keep-alive connection, posting records until stopped."""

    port: int
    records: list[dict[str, Any]]
    threads: int = 4
    batch_every: int = 3  # every third request is a batch of all records
    answers: list[Answer] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._workers = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.threads)
        ]

    def __enter__(self) -> Load:
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        for worker in self._workers:
            worker.join(timeout=60)

    def _run(self, index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        n = index
        while not self.stopped.is_set():
            n += 1
            batch = n % self.batch_every == 0
            record = None if batch else n % len(self.records)
            path, payload = (
                ("/v1/score/batch", {"records": self.records})
                if batch
                else ("/v1/score", self.records[record])
            )
            sent = time.monotonic()
            try:
                connection.request(
                    "POST", path, json.dumps(payload), {"content-type": "application/json"}
                )
                response = connection.getresponse()
                body = response.read()
                answer = Answer(sent, time.monotonic(), response.status, json.loads(body), record)
            except (OSError, http.client.HTTPException) as error:
                answer = Answer(sent, time.monotonic(), 0, None, record, repr(error))
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                time.sleep(0.05)
            with self._lock:
                self.answers.append(answer)
        connection.close()


def versions_named(body: dict[str, Any]) -> set[int]:
    """Every version an answer names (a batch names one per result)."""
    return {r["version"] for r in body.get("results", [body])}
