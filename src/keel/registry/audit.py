"""An append-only, hash-chained, signed audit log beside the registry.

Every row (actor, action, object, before, after, reason, time) carries the sha256 of the row
before it, and its own hash covers its content and that link. A head row holds the count and
the last hash, updated in the same transaction as each append. With an :class:`AuditKey`
each row is also signed over its seq and hash, and the head over (count, last hash); with a
:class:`CheckpointStore`, :meth:`AuditLog.checkpoint` copies the signed head to a second
location after each commit. So an insider with database access can neither re-hash the chain,
cut its newest rows, empty or delete it, nor restore an older copy without :func:`verify_store`
naming it.

Keys. The first keyed append to a log writes a ``key.init`` row naming the key (self-signed;
rows before it, written unsigned, are sealed by its hash); :meth:`AuditLog.rotate_key` writes
a ``key.rotate`` row signed by the old key naming the new one. A public key is trusted when it
is the configured key file's, or named in a validly signed checkpoint, or introduced by a
``key.rotate`` row (intact, validly signed) from a trusted key. A key named only by the
database — in a ``key.init`` row nobody else vouches for — is not: an insider can write one.
Without a key file and checkpoints, signatures are checked only against the keys the log
itself names (they catch an edit, not a determined insider).

Appends are serialized by updating the head row first: SQLite takes its write lock and
PostgreSQL a row lock before anything is read, so concurrent writers form one chain.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from keel.errors import IntegrityError
from keel.registry.signing import (
    AuditKey,
    Checkpoint,
    CheckpointScan,
    CheckpointStore,
    key_id_of,
    verify_signature,
)

GENESIS = "0" * 64
KEY_INIT, KEY_ROTATE = "key.init", "key.rotate"
KEY_ACTOR = "keel:audit-key"
# The kinds of Problem verification reports.
EDITED, DELETED, REORDERED, BROKEN = "edited", "deleted", "reordered", "broken"
TRUNCATED, REHASHED, UNSIGNED = "truncated", "rehashed", "unsigned"
EMPTIED, MISSING, ROLLED_BACK, CHECKPOINT = "emptied", "missing", "rolled back", "checkpoint"

_metadata = sa.MetaData()
_signed_columns = ("key_id", "signature")
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
    sa.Column("key_id", sa.String(16), nullable=False, server_default=""),
    sa.Column("signature", sa.String(128), nullable=False, server_default=""),
    sa.Index(
        "ix_keel_audit_object", "object"
    ),  # a version's or a token's rows, read on every sign-in
)
head_table = sa.Table(
    "keel_audit_head",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("last_hash", sa.String(64), nullable=False),
    sa.Column("key_id", sa.String(16), nullable=False, server_default=""),
    sa.Column("signature", sa.String(128), nullable=False, server_default=""),
)


@dataclass(frozen=True)
class AuditRow:
    """One audited transition; ``key_id`` and ``signature`` are empty on unsigned rows."""

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
    key_id: str = ""
    signature: str = ""

    def expected_hash(self) -> str:
        """The hash this row's content and link must have."""
        return row_hash(
            self.time,
            self.actor,
            self.action,
            self.object,
            self.before,
            self.after,
            self.reason,
            self.prev_hash,
        )

    def describe(self) -> str:
        """The row as a reviewer names it: ``row 3 (approve credit/v3 by ana)``."""
        return f"row {self.seq} ({self.action} {self.object} by {self.actor})"


@dataclass(frozen=True)
class Head:
    """The head row: ``count`` rows ending in ``last_hash``, signed by ``key_id`` (key in force)."""

    count: int
    last_hash: str
    key_id: str = ""
    signature: str = ""


@dataclass(frozen=True)
class Problem:
    """One way the store differs from an untouched log; ``seq`` names the first row affected."""

    # EDITED, DELETED, REORDERED, BROKEN, TRUNCATED, REHASHED, UNSIGNED, EMPTIED, MISSING, ...
    kind: str
    seq: int
    detail: str


def row_hash(
    time: str, actor: str, action: str, obj: str, before: str, after: str, reason: str, prev: str
) -> str:
    """sha256 of a row's canonical JSON (content plus the previous row's hash)."""
    body = json.dumps(
        [time, actor, action, obj, before, after, reason, prev],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def row_message(seq: int, digest: str) -> bytes:
    """What a row's signature covers."""
    return f"keel-audit-row:{seq}:{digest}".encode()


def head_message(count: int, last_hash: str) -> bytes:
    """What the head's signature covers."""
    return f"keel-audit-head:{count}:{last_hash}".encode()


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def create_missing_tables(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """Create the tables of ``metadata`` that are missing.

    A concurrent first user doing the same is fine.
    """
    for table in metadata.sorted_tables:
        try:
            table.create(engine, checkfirst=True)
        except (
            sa.exc.DBAPIError
        ):  # "already exists" from a concurrent first user, or a real failure
            if not sa.inspect(engine).has_table(table.name):
                raise


def _create_tables(engine: sa.Engine) -> None:
    """Create the tables and signature columns that are missing."""
    create_missing_tables(engine, _metadata)
    for table in _metadata.sorted_tables:
        for column in _signed_columns:  # tables written before rows were signed
            if column not in {c["name"] for c in sa.inspect(engine).get_columns(table.name)}:
                column_type = table.c[column].type
                assert isinstance(column_type, sa.String), f"{table.name}.{column} is not a String"
                size = column_type.length
                try:
                    with engine.begin() as conn:
                        conn.execute(
                            sa.text(
                                f"ALTER TABLE {table.name} ADD COLUMN {column} VARCHAR({size}) "
                                "NOT NULL DEFAULT ''"
                            )
                        )
                except sa.exc.DBAPIError:
                    if column not in {
                        c["name"] for c in sa.inspect(engine).get_columns(table.name)
                    }:
                        raise


def open_database(url: str) -> sa.Engine:
    """A SQLAlchemy engine on the governance database; SQLite waits for locks instead of failing."""
    connect_args = {"timeout": 60} if url.startswith("sqlite") else {}
    return sa.create_engine(url, connect_args=connect_args, future=True)


def _read_head(conn: sa.Connection) -> Head | None:
    row = conn.execute(
        sa.select(
            head_table.c.count, head_table.c.last_hash, head_table.c.key_id, head_table.c.signature
        ).where(head_table.c.id == 1)
    ).first()
    return None if row is None else Head(**row._mapping)


def _introduced_key(row: AuditRow) -> str | None:
    """The public key a key.init/key.rotate row names, when its ``after`` names one consistently."""
    try:
        after = json.loads(row.after)
        public = after["public_key"]
        return public if key_id_of(public) == after["key_id"] else None
    except (ValueError, TypeError, KeyError):
        return None


class AuditLog:
    """The audit tables of one database, signed by ``key``.

    Checkpointed to ``checkpoints`` when given.
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        key: AuditKey | None = None,
        checkpoints: CheckpointStore | None = None,
    ) -> None:
        self.engine, self.key, self.checkpoints = engine, key, checkpoints
        newest = checkpoints.newest() if checkpoints is not None else None
        self._checkpointed: int | None = None if newest is None else newest.seq
        if newest is not None:
            stored = _read_store(engine, rows=False)
            if stored.gone or stored.head is None or stored.head.count == 0:
                raise IntegrityError(
                    f"refusing to start a new audit chain at {_where(engine)}: the checkpoint of "
                    f"{newest.time} in {checkpoints} says the log had {newest.seq} rows, but "
                    f"{stored.gone or 'its tables hold none'}; restore the database "
                    "(verify_store names what is gone)"
                )
        _create_tables(engine)
        with engine.begin() as conn:
            if conn.execute(sa.select(head_table.c.id)).first() is None:
                try:
                    with conn.begin_nested():
                        conn.execute(head_table.insert().values(id=1, count=0, last_hash=GENESIS))
                except sa.exc.IntegrityError:  # another process created it first
                    pass

    def lock(self, conn: sa.Connection) -> None:
        """Take the log's write lock for the rest of ``conn``'s transaction.

        This serializes transitions.
        """
        conn.execute(
            head_table.update().where(head_table.c.id == 1).values(count=head_table.c.count)
        )

    def append(
        self,
        *,
        actor: str,
        action: str,
        obj: str,
        before: Any = None,
        after: Any = None,
        reason: str = "",
        connection: sa.Connection | None = None,
    ) -> AuditRow:
        """Add one row to the chain; within ``connection``'s transaction when given.

        With a ``connection`` the caller checkpoints.
        """
        if connection is not None:
            return self._append(connection, actor, action, obj, before, after, reason)
        with self.engine.begin() as conn:
            row = self._append(conn, actor, action, obj, before, after, reason)
        self.checkpoint()
        return row

    def _append(
        self,
        conn: sa.Connection,
        actor: str,
        action: str,
        obj: str,
        before: Any,
        after: Any,
        reason: str,
    ) -> AuditRow:
        self.lock(conn)
        head = self._introduce_key(conn, self._locked_head(conn))
        return self._write(
            conn, head, self.key, self.key, actor, action, obj, before, after, reason
        )[0]

    def _locked_head(self, conn: sa.Connection) -> Head:
        """The head, once this transaction holds the lock.

        Refuses a key that is not the one in force.
        """
        head = _read_head(conn)
        if head is None:
            raise IntegrityError(
                f"the audit head row of {_where(self.engine)} is missing; verify_store names "
                "what was deleted"
            )
        if head.key_id and self.key is None:
            raise IntegrityError(
                f"the audit log at {_where(self.engine)} is signed (key {head.key_id}); "
                "open it with its key file to append (AuditLog(engine, key=...))"
            )
        if head.key_id and self.key is not None and head.key_id != self.key.key_id:
            raise IntegrityError(
                f"the audit log at {_where(self.engine)} is signed by key {head.key_id}, but this "
                f"AuditLog holds key {self.key.key_id} ({self.key.path}): load the key in force "
                "(was it rotated?)"
            )
        return head

    def _introduce_key(self, conn: sa.Connection, head: Head) -> Head:
        """Write the key.init row when this log is keyed and no key signs the log yet."""
        if self.key is None or head.key_id:
            return head
        named = {"key_id": self.key.key_id, "public_key": self.key.public_key_hex}
        return self._write(
            conn,
            head,
            self.key,
            self.key,
            KEY_ACTOR,
            KEY_INIT,
            f"audit-key/{self.key.key_id}",
            None,
            named,
            "rows from here on are signed by this key",
        )[1]

    def _write(
        self,
        conn: sa.Connection,
        head: Head,
        row_key: AuditKey | None,
        head_key: AuditKey | None,
        actor: str,
        action: str,
        obj: str,
        before: Any,
        after: Any,
        reason: str,
    ) -> tuple[AuditRow, Head]:
        """Insert the row after ``head``, signed by ``row_key``, and move the head.

        The new head is signed by ``head_key``.
        """
        seq = head.count + 1
        time = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        values = {
            "time": time,
            "actor": actor,
            "action": action,
            "object": obj,
            "before": _text(before),
            "after": _text(after),
            "reason": reason or "",
        }
        digest = row_hash(
            time,
            actor,
            action,
            obj,
            values["before"],
            values["after"],
            values["reason"],
            head.last_hash,
        )
        row = AuditRow(
            seq=seq,
            prev_hash=head.last_hash,
            hash=digest,
            key_id=row_key.key_id if row_key else "",
            signature=row_key.sign(row_message(seq, digest)) if row_key else "",
            **values,
        )
        conn.execute(audit_table.insert().values(**asdict(row)))
        moved = Head(
            seq,
            digest,
            head_key.key_id if head_key else "",
            head_key.sign(head_message(seq, digest)) if head_key else "",
        )
        conn.execute(head_table.update().where(head_table.c.id == 1).values(**asdict(moved)))
        return row, moved

    def checkpoint(self) -> Checkpoint | None:
        """After a commit: write the signed head to the checkpoint store.

        None when unkeyed or already there. Only a head this key validly signed is checkpointed,
        and never one at or behind the newest checkpoint's seq. A store that cannot be written
        raises (OSError); the rows stay committed, and the next checkpoint covers them.
        """
        if self.key is None or self.checkpoints is None:
            return None
        with self.engine.connect() as conn:
            head = _read_head(conn)
        if (
            head is None
            or head.count == 0
            or head.key_id != self.key.key_id
            or not verify_signature(
                self.key.public_key_hex, head_message(head.count, head.last_hash), head.signature
            )
        ):
            return None
        if (
            self._checkpointed is None
        ):  # listed once; later this log's own checkpoints keep it current
            newest = self.checkpoints.newest()
            self._checkpointed = newest.seq if newest else 0
        if head.count <= self._checkpointed:
            return None
        checkpoint = Checkpoint.sign(head.count, head.last_hash, self.key)
        self._checkpointed = head.count
        return checkpoint if self.checkpoints.write(checkpoint) else None

    def rotate_key(self, new_key: AuditKey, *, actor: str, reason: str) -> AuditRow:
        """Hand signing to ``new_key``: a key.rotate row signed by the old key.

        Later rows are signed by the new one.

        Needs a checkpoint store: its checkpoints keep the old key trusted once the key file
        holds the new one. Replace the key file with ``new_key``'s afterwards.
        """
        if self.key is None or self.checkpoints is None:
            raise IntegrityError(
                "rotating the audit key needs the current key and a checkpoint store (the "
                "checkpoints keep the old key trusted once the key file holds the new one)"
            )
        if new_key.key_id == self.key.key_id:
            raise IntegrityError(
                f"the new audit key is the key in force ({new_key.key_id}); generate a new one"
            )
        with (
            self.engine.begin() as conn
        ):  # the old key is introduced and checkpointed before it hands over
            self.lock(conn)
            self._introduce_key(conn, self._locked_head(conn))
        self.checkpoint()
        with self.engine.begin() as conn:
            self.lock(conn)
            head = self._locked_head(conn)
            row = self._write(
                conn,
                head,
                self.key,
                new_key,
                actor,
                KEY_ROTATE,
                f"audit-key/{new_key.key_id}",
                {"key_id": self.key.key_id},
                {"key_id": new_key.key_id, "public_key": new_key.public_key_hex},
                reason,
            )[0]
        self.key, self._checkpointed = new_key, None
        self.checkpoint()
        return row

    def rows(self, *, obj: str | None = None) -> list[AuditRow]:
        """All rows in sequence order (only those about ``obj`` when given)."""
        query = sa.select(audit_table).order_by(audit_table.c.seq)
        if obj is not None:
            query = query.where(audit_table.c.object == obj)
        with self.engine.connect() as conn:
            return [AuditRow(**row._mapping) for row in conn.execute(query)]

    def verify(self) -> list[Problem]:
        """Every problem :func:`verify_store` finds with this log's key and checkpoints.

        [] means intact.
        """
        return _verify(self.engine, self.key, self.checkpoints)


def verify_store(
    url: str, *, key: AuditKey | None = None, checkpoints: CheckpointStore | None = None
) -> list[Problem]:
    """Check the audit store at ``url`` against ``key`` and ``checkpoints``, creating nothing.

    [] means intact. Raises IntegrityError when there is neither a database with audit tables
    nor a checkpoint there.
    """
    engine = open_database(url)
    try:
        return _verify(engine, key, checkpoints)
    finally:
        engine.dispose()


# Reading what is stored, creating nothing --------------------------------------------------
@dataclass(frozen=True)
class _Stored:
    gone: str = ""  # why the database or its tables are not there ("" when both tables are)
    nothing: bool = False  # neither the database nor any audit table exists
    rows: tuple[AuditRow, ...] = ()
    head: Head | None = None


def _where(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _read_store(engine: sa.Engine, *, rows: bool = True) -> _Stored:
    """The head and rows at ``engine``, read without creating the database or a table."""
    url = engine.url
    if (
        url.get_backend_name() == "sqlite"
        and url.database not in (None, "", ":memory:")
        and not url.query.get("uri")
        and not Path(url.database).is_file()
    ):
        return _Stored(f"the database file {url.database} does not exist", nothing=True)
    try:
        inspector = sa.inspect(engine)
        tables = set(inspector.get_table_names())
    except sa.exc.OperationalError as error:
        if "does not exist" not in str(error):
            raise
        return _Stored(f"the database {_where(engine)} does not exist", nothing=True)
    lacking = [t.name for t in _metadata.sorted_tables if t.name not in tables]
    if lacking:
        return _Stored(
            f"the table(s) {', '.join(lacking)} do not exist in {_where(engine)}",
            nothing=len(lacking) == len(_metadata.tables),
        )
    present = {
        t.name: {c["name"] for c in inspector.get_columns(t.name)} for t in _metadata.sorted_tables
    }
    head_query = sa.select(
        *[c for c in head_table.c if c.name in present[head_table.name] and c.name != "id"]
    ).where(head_table.c.id == 1)
    row_query = sa.select(
        *[c for c in audit_table.c if c.name in present[audit_table.name]]
    ).order_by(audit_table.c.seq)
    first: sa.Row[Any] | None = None
    found: tuple[AuditRow, ...] = ()
    for _ in range(5):  # a writer committing between the reads moves the head: read again
        with engine.connect() as conn:
            first = conn.execute(head_query).first()
            found = tuple(AuditRow(**r._mapping) for r in conn.execute(row_query)) if rows else ()
            again = conn.execute(head_query).first()
        if first == again:
            break
    return _Stored(rows=found, head=None if first is None else Head(**first._mapping))


def _verify(
    engine: sa.Engine, key: AuditKey | None, checkpoints: CheckpointStore | None
) -> list[Problem]:
    scan = (
        checkpoints.scan() if checkpoints is not None else CheckpointScan([], [])
    )  # before the rows: never ahead
    problems = [
        Problem(
            CHECKPOINT,
            int(name[:12]) if name[:12].isdigit() else 0,
            f"checkpoint file {name} is malformed: {why}; it is ignored",
        )
        for name, why in scan.malformed
    ]
    valid: list[Checkpoint] = []
    for c in scan.checkpoints:
        if c.is_valid():
            valid.append(c)
        else:
            problems.append(
                Problem(
                    CHECKPOINT,
                    c.seq,
                    f"checkpoint {c.name} (row {c.seq}, {c.time}) does not "
                    f"verify: its signature is not key {c.key_id}'s over its seq, hash and time; "
                    "it is ignored",
                )
            )
    stored = _read_store(engine)
    if not stored.gone:
        return sorted(
            problems + _check(list(stored.rows), stored.head, key, valid), key=lambda p: p.seq
        )
    if stored.nothing and not (scan.checkpoints or scan.malformed):
        raise IntegrityError(
            f"no governance store at {_where(engine)}: {stored.gone}, and no checkpoint "
            f"({checkpoints or 'none configured'}) says one existed; check the URL or project "
            "folder"
        )
    newest = valid[-1] if valid else None
    said = (
        f"but the checkpoint of {newest.time} says the log had {newest.seq} rows: "
        f"{_span(1, newest.seq)} lost"
        if newest
        else "and no valid checkpoint says how many rows it had"
    )
    return problems + [Problem(MISSING, 1, f"{stored.gone}, {said}")]


# The checks, over what was read ----------------------------------------------------------
def _span(first: int, last: int) -> str:
    """``row 8 was`` or ``rows 6-8 were``."""
    return f"row {first} was" if first == last else f"rows {first}-{last} were"


def _check(
    rows: list[AuditRow], head: Head | None, key: AuditKey | None, checkpoints: list[Checkpoint]
) -> list[Problem]:
    anchors = {c.public_key for c in checkpoints} | (
        {key.public_key_hex} if key else set()
    )  # trusted keys
    newest = checkpoints[-1] if checkpoints else None
    if not rows:
        return _empty(head, newest)
    problems = _chain(rows, head)
    if not anchors and not any(r.action == KEY_INIT for r in rows):
        return problems  # an unsigned log, verified as a hash chain
    skip = {
        p.seq for p in problems if p.kind == REORDERED
    }  # a moved row's signature fails by its move
    signatures, flagged, head_state = _signatures(rows, head, anchors, key, skip)
    problems += signatures
    problems += _against_checkpoints(rows, checkpoints, problems, skip)
    count = head.count if head else rows[-1].seq
    if newest is not None and newest.seq > count:
        lost = _span(count + 1, newest.seq)
        if head_state == "valid":
            older = next(
                (c for c in checkpoints if c.seq == count and head and c.hash == head.last_hash),
                None,
            )
            problems.append(
                Problem(
                    ROLLED_BACK,
                    count + 1,
                    f"restored older copy: head at row {count}, checkpoint "
                    f"says {newest.seq} rows at {newest.time} ({lost} lost)"
                    + (f"; the copy matches the checkpoint of {older.time}" if older else ""),
                )
            )
        else:
            problems.append(
                Problem(
                    TRUNCATED,
                    count + 1,
                    f"{lost} deleted and the head rewritten to "
                    f"match: the head says {count} rows, the checkpoint of {newest.time} says "
                    f"{newest.seq}, and the head's signature {head_state}",
                )
            )
    elif head_state != "valid" and head is not None and rows[-1].seq not in flagged:
        if head_state == "is missing":
            problems.append(
                Problem(
                    UNSIGNED,
                    count,
                    f"the head ({count} rows, ending in row {rows[-1].seq}) "
                    "carries no signature, though the log is signed",
                )
            )
        else:
            problems.append(
                Problem(
                    TRUNCATED,
                    count + 1,
                    f"the head says {count} rows ending in hash "
                    f"{head.last_hash[:12]}..., but its signature {head_state}: rows after row "
                    f"{count} were probably deleted and the head rewritten to match",
                )
            )
    return problems


def _empty(head: Head | None, newest: Checkpoint | None) -> list[Problem]:
    """Problems of a log with no rows: none for a fresh one."""
    if head is not None and head.count == 0 and newest is None:
        return []
    holds = (
        "the audit tables hold no rows and no head row"
        if head is None
        else f"the audit table holds no rows, but its head says {head.count}"
        if head.count
        else "the audit tables hold no rows"
    )
    said = (
        f", while the checkpoint of {newest.time} says there were {newest.seq}: "
        f"{_span(1, newest.seq)} deleted"
        if newest
        else ": the log was emptied (no checkpoint says how many rows it had)"
    )
    return [Problem(EMPTIED, 1, holds + said)]


def _chain(rows: list[AuditRow], head: Head | None) -> list[Problem]:
    """Every edited, deleted, reordered or unlinked row, and a head that does not end the chain."""
    problems: list[Problem] = []
    by_hash = {r.hash: r for r in rows}
    expected_seq, prev = 1, GENESIS
    for row in rows:
        if row.expected_hash() != row.hash:
            problems.append(
                Problem(
                    EDITED,
                    row.seq,
                    f"{row.describe()} does not match its hash: its content was changed",
                )
            )
        if row.seq > expected_seq:
            missing = list(range(expected_seq, row.seq))
            problems.append(
                Problem(DELETED, missing[0], f"row(s) {missing} are missing before row {row.seq}")
            )
        elif row.prev_hash != prev and row.prev_hash in by_hash:
            follows = by_hash[row.prev_hash].seq
            problems.append(
                Problem(
                    REORDERED,
                    row.seq,
                    f"row {row.seq} was written after row {follows}, not after row {row.seq - 1}",
                )
            )
        elif row.prev_hash != prev and row.seq == expected_seq:
            problems.append(
                Problem(BROKEN, row.seq, f"row {row.seq} does not link to row {row.seq - 1}")
            )
        expected_seq, prev = row.seq + 1, row.hash
    if head is None:
        problems.append(
            Problem(
                BROKEN,
                rows[-1].seq,
                "the head row is missing, so deleted newest rows cannot be ruled out",
            )
        )
    elif head.count > rows[-1].seq:
        missing = list(range(rows[-1].seq + 1, head.count + 1))
        problems.append(
            Problem(
                DELETED, missing[0], f"newest row(s) {missing} are missing (head says {head.count})"
            )
        )
    elif head.last_hash != rows[-1].hash and not problems:
        problems.append(
            Problem(BROKEN, rows[-1].seq, "the head hash does not match the newest row")
        )
    return problems


def _signatures(
    rows: list[AuditRow], head: Head | None, anchors: set[str], key: AuditKey | None, skip: set[int]
) -> tuple[list[Problem], set[int], str]:
    """Row signature problems (runs of rows grouped), the seqs they flag, and the head's signature.

    The head state is "valid", or what is wrong with its signature (a phrase).
    """
    trusting = bool(anchors)
    start = next(
        (i for i, r in enumerate(rows) if r.action == KEY_INIT), None
    )  # earlier rows: sealed by key.init
    by_id = {key_id_of(public): public for public in anchors}
    current: str | None = None  # the public key in force
    trusted = False
    verdicts: list[tuple[int, str, str, str]] = []  # (index, kind, why, key id)
    for index in range(start or 0, len(rows)):
        row = rows[index]
        signer, signer_trusted = current, trusted
        if (
            start is None and row.key_id in by_id
        ):  # no key.init left (deleted?): a trusted key vouches directly
            signer, signer_trusted = by_id[row.key_id], True
        elif row.action == KEY_INIT and current is None:
            signer = current = _introduced_key(row)
            signer_trusted = trusted = current is not None and (not trusting or current in anchors)
        elif row.action == KEY_ROTATE:
            current = _introduced_key(row)
            handed = (
                signer is not None
                and signer_trusted
                and row.expected_hash() == row.hash
                and verify_signature(signer, row_message(row.seq, row.hash), row.signature)
            )
            trusted = current is not None and (handed or not trusting or current in anchors)
        if row.seq in skip:
            continue
        signer_id = key_id_of(signer) if signer else ""
        if not row.signature:
            verdicts.append(
                (
                    index,
                    UNSIGNED,
                    "no signature, and no key.init row introduces a signing key, though "
                    "this log is verified as signed"
                    if start is None
                    else "no signature, though every row from the key.init row on must be signed",
                    signer_id,
                )
            )
        elif signer is None:
            verdicts.append(
                (
                    index,
                    REHASHED,
                    "signed, but no intact key.init or key.rotate row names the key in "
                    "force: the chain was rewritten",
                    "",
                )
            )
        elif not verify_signature(signer, row_message(row.seq, row.hash), row.signature):
            named = f" (the row names key {row.key_id})" if row.key_id != signer_id else ""
            verdicts.append(
                (
                    index,
                    REHASHED,
                    f"not signed by key {signer_id} over its seq and hash{named}: "
                    "rewritten and re-hashed after signing",
                    signer_id,
                )
            )
        elif not signer_trusted:
            verdicts.append(
                (
                    index,
                    REHASHED,
                    f"signed by key {signer_id}, which is not trusted: it is not the key "
                    f"file's{f' ({key.key_id})' if key else ''}, not named in any checkpoint, "
                    "and not introduced by a key.rotate row from a trusted key",
                    signer_id,
                )
            )
    problems: list[Problem] = []
    flagged: set[int] = set()
    for group in _runs(verdicts):
        index, kind, why, _ = group[0]
        first, last = rows[index], rows[group[-1][0]]
        what = (
            first.describe()
            if first is last
            else f"rows {first.seq}-{last.seq} "
            f"(the first: {first.action} {first.object} by {first.actor})"
        )
        problems.append(Problem(kind, rows[index].seq, f"{what}: {why}"))
        flagged |= {rows[i].seq for i, *_ in group}
    if start is None and head is not None and head.key_id in by_id:
        current, trusted = by_id[head.key_id], True
    return problems, flagged, _head_state(head, current, trusted, trusting)


def _runs(verdicts: list[tuple[int, str, str, str]]) -> list[list[tuple[int, str, str, str]]]:
    """Verdicts grouped into runs of adjacent rows with the same finding."""
    runs: list[list[tuple[int, str, str, str]]] = []
    for verdict in verdicts:
        if runs and runs[-1][-1][0] == verdict[0] - 1 and runs[-1][-1][1:] == verdict[1:]:
            runs[-1].append(verdict)
        else:
            runs.append([verdict])
    return runs


def _head_state(head: Head | None, current: str | None, trusted: bool, trusting: bool) -> str:
    if head is None:
        return "is missing with the head row"
    if not head.signature:
        return "is missing"
    if current is None or not verify_signature(
        current, head_message(head.count, head.last_hash), head.signature
    ):
        return (
            f"is not key {key_id_of(current)}'s over that count and hash"
            if current
            else "cannot be checked: no key is in force"
        )
    if trusting and not trusted:
        return f"is by key {key_id_of(current)}, which is not trusted"
    return "valid"


def _against_checkpoints(
    rows: list[AuditRow], checkpoints: list[Checkpoint], problems: list[Problem], skip: set[int]
) -> list[Problem]:
    """The first row whose hash differs from a checkpoint's, as a problem.

    [] instead when its re-hashing (or its move) is already named.
    """
    by_seq = {r.seq: r for r in rows if r.seq not in skip}
    agreed = 0
    for c in checkpoints:
        row = by_seq.get(c.seq)
        if row is None:
            continue
        if row.hash == c.hash:
            agreed = c.seq
            continue
        if any(p.kind == REHASHED and p.seq <= c.seq for p in problems):
            return []
        where = (
            f"row {c.seq}"
            if agreed >= c.seq - 1
            else f"a row after row {agreed}, at or before row {c.seq},"
        )
        return [
            Problem(
                REHASHED,
                c.seq,
                f"{row.describe()} has hash {row.hash[:12]}..., but the checkpoint of "
                f"{c.time} recorded {c.hash[:12]}... for it: {where} was rewritten and the hashes "
                "from there on recomputed",
            )
        ]
    return []
