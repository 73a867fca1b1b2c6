"""The prediction log: every answered request, committed before the answer leaves.

A request's rows are committed on the caller's thread when the database's write lock is
free (about 30 us); when another process holds it, they go to one writer thread through a
bounded queue, and the request waits until the transaction holding them commits (group
commit: one transaction for whatever is waiting). Either way a row acknowledged to a
client survives kill -9 of the server. A full queue refuses new rows at once
(:class:`Overloaded`), so memory stays bounded under overload. A request that times out
while its rows are being committed may still be logged: the log can hold a row whose
answer the client never saw, never the reverse. The store is SQLite in WAL mode: several
worker processes can append to one file, and monitoring reads it while they do; the writer
checkpoints the WAL when idle, so no request pays for a checkpoint.

A shadow challenger's answers go to a table of their own, ``shadow_predictions``, with the
same columns; they are written by the same thread but nobody waits for them. Labels that
arrive later (``POST /v1/labels``) go to ``labels``, keyed by the event's id.
"""

from __future__ import annotations

import asyncio
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from keel.errors import DataError, KeelError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
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


_LABELS = """
CREATE TABLE IF NOT EXISTS labels (
    time TEXT NOT NULL,
    event_id TEXT NOT NULL,
    labels TEXT NOT NULL
)
"""


class Overloaded(KeelError):
    """The log's queue is full: the caller should shed the request (503 with Retry-After)."""


class LogLost(Overloaded):
    """The log's file was deleted or replaced while open: nothing written now is durable (503)."""


TABLES = ("predictions", "shadow_predictions")
_CHECKPOINT_SECONDS = (
    1.0  # the writer copies the WAL into the database after this long without work
)


@dataclass
class _Pending:
    table: str
    rows: list[tuple[Any, ...]]
    done: Callable[
        [BaseException | None], None
    ]  # called by the writer once the rows are committed (or not)


class PredictionLog:
    """Appends prediction rows durably.

    ``append`` and ``append_async`` return only once the rows are committed.
    """

    def __init__(self, path: Path, *, max_pending: int = 10_000) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            for table in TABLES:
                conn.execute(_SCHEMA.format(table=table))
            conn.execute(_LABELS)
        self._identity = _identity(
            path
        )  # the file opened; a deleted or replaced one is refused (LogLost)
        self._direct = self._connect(busy_seconds=0)
        self._direct.execute("PRAGMA synchronous=NORMAL")
        self._direct.execute(
            "PRAGMA wal_autocheckpoint=0"
        )  # the writer thread checkpoints (a pause of ms)
        self._direct_lock = threading.Lock()
        self._queue: queue.Queue[_Pending | None] = queue.Queue(maxsize=max_pending)
        self._writer = threading.Thread(
            target=self._write_loop, name="keel-prediction-log", daemon=True
        )
        self._writer.start()

    def append(
        self,
        request_id: str,
        time: str,
        inputs: list[dict[str, Any]],
        decisions: list[dict[str, Any]],
        *,
        timeout: float = 10.0,
    ) -> None:
        """Log one request's rows and wait for their commit.

        Raises :class:`Overloaded` when the queue is full.
        """
        committed = threading.Event()
        outcome: list[BaseException | None] = []

        def done(error: BaseException | None) -> None:
            outcome.append(error)
            committed.set()

        self._put(_Pending("predictions", _rows(request_id, time, inputs, decisions), done))
        if not committed.wait(timeout):
            raise Overloaded(f"the prediction log did not commit within {timeout} s")
        if outcome[0] is not None:
            raise outcome[0]

    async def append_async(
        self,
        request_id: str,
        time: str,
        inputs: list[dict[str, Any]],
        decisions: list[dict[str, Any]],
    ) -> None:
        """:meth:`append` for an event loop: awaits the commit without blocking other requests.

        When no other process is writing, the rows are committed at once on the caller's thread
        (about 30 us); handing them to the writer thread and back cost ten times that. Otherwise
        they go to the writer, which waits for the lock while the loop serves other requests.
        """
        rows = _rows(request_id, time, inputs, decisions)
        if self._commit_now("predictions", rows):
            return
        loop = asyncio.get_running_loop()
        committed = loop.create_future()

        def settle(error: BaseException | None) -> None:
            if not committed.done():  # the request may have been cancelled (timed out) meanwhile
                committed.set_exception(error) if error is not None else committed.set_result(None)

        def notify(error: BaseException | None) -> None:
            with suppress(RuntimeError):  # the loop has closed: nobody is waiting now
                loop.call_soon_threadsafe(settle, error)

        self._put(_Pending("predictions", rows, notify))
        await committed

    def intact(self) -> bool:
        """True while the log's file is still the one at its path (not deleted, not replaced)."""
        try:
            return _identity(self.path) == self._identity
        except OSError:
            return False

    def _check(self) -> None:
        if not self.intact():
            raise LogLost(
                f"the prediction log {self.path} was deleted or replaced while open; answers "
                "cannot be logged durably until the server is restarted (it opens the log again)"
            )

    def _commit_now(self, table: str, rows: list[tuple[Any, ...]]) -> bool:
        """Commit ``rows`` on this thread if the database's write lock is free now, else False."""
        if not self._direct_lock.acquire(blocking=False):
            return False
        try:
            self._check()
            try:
                self._direct.execute(
                    "BEGIN IMMEDIATE"
                )  # busy timeout 0: fails at once when another writer holds it
            except sqlite3.OperationalError:
                return False
            try:
                self._direct.executemany(
                    f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
                )
                self._direct.execute("COMMIT")
            except BaseException:
                self._direct.execute("ROLLBACK")
                raise
            # deleted during the commit: the rows went to the old file, so no acknowledgement
            self._check()
            return True
        finally:
            self._direct_lock.release()

    def append_shadow(
        self,
        request_id: str,
        time: str,
        inputs: list[dict[str, Any]],
        decisions: list[dict[str, Any]],
    ) -> bool:
        """Queue a shadow challenger's rows without waiting.

        False when the queue is full (they are dropped).
        """
        try:
            self._put(
                _Pending(
                    "shadow_predictions", _rows(request_id, time, inputs, decisions), lambda _: None
                )
            )
        except Overloaded:
            return False
        return True

    def append_labels(self, time: str, id_column: str, labels: list[dict[str, Any]]) -> None:
        """Log labels that arrived (each row keyed by its event id), committed before returning."""
        rows = [(time, str(label[id_column]), _json(label)) for label in labels]
        self._check()  # a fresh connection to a deleted file would make a new, empty one
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO labels VALUES (?, ?, ?)", rows)
            conn.execute("COMMIT")
        finally:
            conn.close()

    def pending(self) -> int:
        """Requests queued and not yet taken by the writer."""
        return self._queue.qsize()

    def _put(self, pending: _Pending) -> None:
        try:
            self._queue.put_nowait(pending)
        except queue.Full:
            raise Overloaded("the prediction log is behind; try again shortly") from None

    def close(self) -> None:
        """Commit what is queued and stop the writer."""
        self._queue.put(None)
        self._writer.join()
        self._direct.close()

    def rows(self, table: str = "predictions") -> list[dict[str, Any]]:
        """Every logged row of ``table`` (one of :data:`TABLES` or ``labels``), in commit order."""
        if table not in (*TABLES, "labels"):
            raise ValueError(
                f"no table '{table}' in the prediction log; it has {[*TABLES, 'labels']}"
            )
        with self._connect() as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY rowid")]

    def _connect(self, busy_seconds: float = 30) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=busy_seconds, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout={int(busy_seconds * 1000)}")
        return conn

    def _write_loop(self) -> None:
        conn = self._connect()
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL: a commit survives the process dying
        stopping = False
        while not stopping:
            try:
                batch = [self._queue.get(timeout=_CHECKPOINT_SECONDS)]
            except queue.Empty:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # here, not in a request's commit
                continue
            while not self._queue.empty() and len(batch) < 512:
                batch.append(self._queue.get_nowait())
            stopping = None in batch
            work = [p for p in batch if p is not None]
            error: BaseException | None = None
            try:
                self._check()
                conn.execute("BEGIN IMMEDIATE")
                for table in TABLES:
                    conn.executemany(
                        f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [row for p in work if p.table == table for row in p.rows],
                    )
                conn.execute("COMMIT")
                self._check()
            except BaseException as failure:  # noqa: BLE001 - handed to every waiting request
                conn.execute("ROLLBACK") if conn.in_transaction else None
                error = failure
            for p in work:
                p.done(error)
        conn.close()


def _identity(path: Path) -> tuple[int, int]:
    """The file's device and inode: what it is, whatever its name."""
    found = os.stat(path)
    return found.st_dev, found.st_ino


def _rows(
    request_id: str, time: str, inputs: list[dict[str, Any]], decisions: list[dict[str, Any]]
) -> list[tuple[Any, ...]]:
    return [
        (
            request_id,
            i,
            time,
            d["model"],
            d["version"],
            _json(inputs[i]),
            d["probability"],
            d["decision"],
            _json(d.get("reasons")),
        )
        for i, d in enumerate(decisions)
    ]


def _json(value: Any) -> str:
    """JSON text of a logged value (orjson: a tenth of json.dumps's time; dates as ISO 8601)."""
    return orjson.dumps(value, default=str).decode()


def read_answers(path: Path, model: str) -> list[dict[str, Any]]:
    """Every answered row of ``model`` in the log at ``path``, oldest first, read-only.

    Each is its request id, row, time, version, inputs (parsed) and probability. A missing file
    is a :class:`~keel.errors.DataError`.
    """
    if not path.is_file():
        raise DataError(
            f"no prediction log at {path}; keel serve writes predictions.db in the project folder"
        )
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT request_id, row, time, version, inputs, probability FROM predictions "
            "WHERE model = ? ORDER BY rowid",
            (model,),
        ).fetchall()
    return [
        {
            "request_id": r[0],
            "row": r[1],
            "time": r[2],
            "version": r[3],
            "inputs": orjson.loads(r[4]),
            "probability": r[5],
        }
        for r in rows
    ]


def read_labels(path: Path) -> list[dict[str, Any]]:
    """Every label posted to the log at ``path`` (``POST /v1/labels``), oldest first.

    Each is its time and the label's fields.
    """
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT time, labels FROM labels ORDER BY rowid").fetchall()
    return [{"time": time, "labels": orjson.loads(labels)} for time, labels in rows]
