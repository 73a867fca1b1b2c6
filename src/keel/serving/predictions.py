"""The prediction log: every answered request, committed before the answer leaves.

Requests hand their rows to one writer thread through a bounded queue and wait until the
transaction holding them commits (group commit: one transaction for whatever is waiting),
so a row acknowledged to a client survives kill -9 of the server. A full queue refuses
new rows at once (:class:`Overloaded`), so memory stays bounded under overload. The store
is SQLite in WAL mode: several worker processes can append to one file, and monitoring
reads it while they do.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel.errors import KeelError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    request_id TEXT NOT NULL,
    row INTEGER NOT NULL,
    time TEXT NOT NULL,
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    inputs TEXT NOT NULL,
    probability REAL NOT NULL,
    decision TEXT NOT NULL,
    reasons TEXT,
    PRIMARY KEY (request_id, row)
)
"""


class Overloaded(KeelError):
    """The log's queue is full: the caller should shed the request (503 with Retry-After)."""


@dataclass
class _Pending:
    rows: list[tuple[Any, ...]]
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class PredictionLog:
    """Appends prediction rows durably; ``append`` returns only once they are committed."""

    def __init__(self, path: Path, *, max_pending: int = 10_000) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)
        self._queue: queue.Queue[_Pending | None] = queue.Queue(maxsize=max_pending)
        self._writer = threading.Thread(target=self._write_loop, name="keel-prediction-log", daemon=True)
        self._writer.start()

    def append(self, request_id: str, time: str, inputs: list[dict[str, Any]], decisions: list[dict[str, Any]],
               *, timeout: float = 10.0) -> None:
        """Log one request's rows and wait for their commit; raises :class:`Overloaded` when the queue is full."""
        pending = _Pending([
            (request_id, i, time, d["model"], d["version"], json.dumps(inputs[i], default=str), d["probability"],
             d["decision"], json.dumps(d.get("reasons")))
            for i, d in enumerate(decisions)
        ])
        try:
            self._queue.put_nowait(pending)
        except queue.Full:
            raise Overloaded("the prediction log is behind; try again shortly") from None
        if not pending.done.wait(timeout):
            raise Overloaded(f"the prediction log did not commit within {timeout} s")
        if pending.error is not None:
            raise pending.error

    def close(self) -> None:
        """Commit what is queued and stop the writer."""
        self._queue.put(None)
        self._writer.join()

    def rows(self) -> list[dict[str, Any]]:
        """Every logged row, in commit order (for tests and monitoring)."""
        with self._connect() as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute("SELECT * FROM predictions ORDER BY rowid")]

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def _write_loop(self) -> None:
        conn = self._connect()
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL: a commit survives the process dying
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            while not self._queue.empty() and len(batch) < 512:
                batch.append(self._queue.get_nowait())
            stopping = None in batch
            work = [p for p in batch if p is not None]
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                 [row for p in work for row in p.rows])
                conn.execute("COMMIT")
            except BaseException as error:  # noqa: BLE001 - handed to every waiting request
                conn.execute("ROLLBACK") if conn.in_transaction else None
                for p in work:
                    p.error = error
            for p in work:
                p.done.set()
        conn.close()
