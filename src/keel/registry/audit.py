"""An append-only, hash-chained audit log beside the registry.

Every row (actor, action, object, before, after, reason, time) carries the sha256 of the
row before it, and its own hash covers its content and that link. A head row holds the
count and the last hash, updated in the same transaction as each append, so deleting the
newest rows is caught too. :meth:`AuditLog.verify` names every edited, deleted or
reordered row. (Someone able to rewrite the whole table *and* the head consistently is
outside what a hash chain alone can catch; exporting the head hash elsewhere closes that.)

Appends are serialized by updating the head row first: SQLite takes its write lock and
PostgreSQL a row lock before anything is read, so concurrent writers form one chain.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

GENESIS = "0" * 64
_metadata = sa.MetaData()
audit_table = sa.Table(
    "keel_audit",
    _metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("time", sa.String(40), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("object", sa.String(500), nullable=False),
    sa.Column("before", sa.Text, nullable=False),
    sa.Column("after", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)
head_table = sa.Table(
    "keel_audit_head",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("last_hash", sa.String(64), nullable=False),
)


@dataclass(frozen=True)
class AuditRow:
    """One audited transition."""

    seq: int
    time: str
    actor: str
    action: str
    object: str
    before: str
    after: str
    reason: str
    prev_hash: str
    hash: str

    def expected_hash(self) -> str:
        """The hash this row's content and link must have."""
        return row_hash(self.time, self.actor, self.action, self.object, self.before, self.after, self.reason,
                        self.prev_hash)


@dataclass(frozen=True)
class Problem:
    """One way the log differs from an untouched chain; ``seq`` names the row."""

    kind: str  # "edited", "deleted", "reordered", "broken"
    seq: int
    detail: str


def row_hash(time: str, actor: str, action: str, obj: str, before: str, after: str, reason: str, prev: str) -> str:
    """sha256 of a row's canonical JSON (content plus the previous row's hash)."""
    body = json.dumps([time, actor, action, obj, before, after, reason, prev], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _create_tables(engine: sa.Engine) -> None:
    """Create the tables that are missing; another process creating one at the same moment is fine."""
    for table in _metadata.sorted_tables:
        try:
            table.create(engine, checkfirst=True)
        except sa.exc.DBAPIError:  # "already exists" from a concurrent first user, or a real failure
            if not sa.inspect(engine).has_table(table.name):
                raise


def make_engine(url: str) -> sa.Engine:
    """An engine for the audit tables; SQLite waits for locks instead of failing at once."""
    connect_args = {"timeout": 60} if url.startswith("sqlite") else {}
    return sa.create_engine(url, connect_args=connect_args, future=True)


class AuditLog:
    """The audit table of one database (the registry's own by default)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        _create_tables(engine)
        with engine.begin() as conn:
            if conn.execute(sa.select(head_table.c.id)).first() is None:
                try:
                    with conn.begin_nested():
                        conn.execute(head_table.insert().values(id=1, count=0, last_hash=GENESIS))
                except sa.exc.IntegrityError:  # another process created it first
                    pass

    def lock(self, conn: sa.Connection) -> None:
        """Take the log's write lock for the rest of ``conn``'s transaction (serializes transitions)."""
        conn.execute(head_table.update().where(head_table.c.id == 1).values(count=head_table.c.count))

    def append(self, *, actor: str, action: str, obj: str, before: Any = None, after: Any = None,
               reason: str = "", connection: sa.Connection | None = None) -> AuditRow:
        """Add one row to the chain; within ``connection``'s transaction when given."""
        if connection is not None:
            return self._append(connection, actor, action, obj, before, after, reason)
        with self.engine.begin() as conn:
            return self._append(conn, actor, action, obj, before, after, reason)

    def _append(self, conn: sa.Connection, actor: str, action: str, obj: str, before: Any, after: Any,
                reason: str) -> AuditRow:
        conn.execute(head_table.update().where(head_table.c.id == 1).values(count=head_table.c.count + 1))
        count, last = conn.execute(sa.select(head_table.c.count, head_table.c.last_hash)).one()
        time = dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")
        values = dict(time=time, actor=actor, action=action, object=obj, before=_text(before), after=_text(after),
                      reason=reason or "")
        digest = row_hash(time, actor, action, obj, values["before"], values["after"], values["reason"], last)
        conn.execute(audit_table.insert().values(seq=count, prev_hash=last, hash=digest, **values))
        conn.execute(head_table.update().where(head_table.c.id == 1).values(last_hash=digest))
        return AuditRow(seq=count, prev_hash=last, hash=digest, **values)

    def checkpoint(self) -> None:
        """Sign the current head and write it to the checkpoint location (no-op without a key)."""
        return None

    def rows(self, *, obj: str | None = None) -> list[AuditRow]:
        """All rows in sequence order (only those about ``obj`` when given)."""
        query = sa.select(audit_table).order_by(audit_table.c.seq)
        if obj is not None:
            query = query.where(audit_table.c.object == obj)
        with self.engine.connect() as conn:
            return [AuditRow(**row._mapping) for row in conn.execute(query)]

    def verify(self) -> list[Problem]:
        """Every edited, deleted or reordered row; an empty list means the chain is intact."""
        rows = self.rows()
        with self.engine.connect() as conn:
            count, last = conn.execute(sa.select(head_table.c.count, head_table.c.last_hash)).one()
        problems: list[Problem] = []
        by_hash = {r.hash: r for r in rows}
        expected_seq, prev = 1, GENESIS
        for row in rows:
            if row.expected_hash() != row.hash:
                problems.append(Problem("edited", row.seq, f"row {row.seq} ({row.action} {row.object} by "
                                        f"{row.actor}) does not match its hash: its content was changed"))
            if row.seq > expected_seq:
                missing = list(range(expected_seq, row.seq))
                problems.append(Problem("deleted", missing[0], f"row(s) {missing} are missing before row {row.seq}"))
            elif row.prev_hash != prev and row.prev_hash in by_hash:
                follows = by_hash[row.prev_hash].seq
                problems.append(Problem("reordered", row.seq,
                                        f"row {row.seq} was written after row {follows}, not after row {row.seq - 1}"))
            elif row.prev_hash != prev and row.seq == expected_seq:
                problems.append(Problem("broken", row.seq, f"row {row.seq} does not link to row {row.seq - 1}"))
            expected_seq, prev = row.seq + 1, row.hash
        if count > (rows[-1].seq if rows else 0):
            missing = list(range((rows[-1].seq if rows else 0) + 1, count + 1))
            problems.append(Problem("deleted", missing[0], f"newest row(s) {missing} are missing (head says {count})"))
        elif rows and last != rows[-1].hash and not problems:
            problems.append(Problem("broken", rows[-1].seq, "the head hash does not match the newest row"))
        return problems
