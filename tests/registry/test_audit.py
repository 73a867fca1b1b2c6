"""The audit log catches an edited, a deleted and a reordered row, and names each.

On SQLite and PostgreSQL.
"""

from __future__ import annotations

from itertools import pairwise

import sqlalchemy as sa

from keel.registry.audit import GENESIS, AuditLog, audit_table, head_table, open_database

from workers import append_many, fork_context

WRITERS, ROWS = 4, 15


def _log(url: str, rows: int = 5) -> AuditLog:
    log = AuditLog(open_database(url))
    for i in range(1, rows + 1):
        log.append(
            actor=f"user{i}",
            action="approve",
            obj=f"credit/v{i}",
            before={"state": "validated"},
            after={"state": "approved"},
            reason=f"note {i}",
        )
    return log


def _sql(log: AuditLog, statement: sa.Executable) -> None:
    with log.engine.begin() as conn:
        conn.execute(statement)


def test_an_untouched_chain_verifies_and_links_every_row(database_url: str) -> None:
    log = _log(database_url)
    rows = log.rows()
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in pairwise(rows))
    assert log.verify() == []


def test_verify_names_an_edited_row(database_url: str) -> None:
    log = _log(database_url)
    _sql(log, audit_table.update().where(audit_table.c.seq == 3).values(actor="mallory"))
    problems = log.verify()
    assert [(p.kind, p.seq) for p in problems] == [("edited", 3)]
    assert "row 3 (approve credit/v3 by mallory)" in problems[0].detail


def test_verify_names_a_deleted_row(database_url: str) -> None:
    log = _log(database_url)
    _sql(log, audit_table.delete().where(audit_table.c.seq == 2))
    problems = log.verify()
    assert [(p.kind, p.seq) for p in problems] == [("deleted", 2)]
    assert "row(s) [2] are missing before row 3" in problems[0].detail


def test_verify_names_deleted_newest_rows_through_the_head(database_url: str) -> None:
    log = _log(database_url)
    _sql(log, audit_table.delete().where(audit_table.c.seq >= 4))
    assert [(p.kind, p.seq) for p in log.verify()] == [("deleted", 4)]


def test_verify_names_reordered_rows(database_url: str) -> None:
    log = _log(database_url)
    _sql(log, audit_table.update().where(audit_table.c.seq == 3).values(seq=-3))
    _sql(log, audit_table.update().where(audit_table.c.seq == 4).values(seq=3))
    _sql(log, audit_table.update().where(audit_table.c.seq == -3).values(seq=4))
    problems = log.verify()
    assert [(p.kind, p.seq) for p in problems] == [
        ("reordered", 3),
        ("reordered", 4),
        ("reordered", 5),
    ]
    assert problems[0].detail == "row 3 was written after row 4, not after row 2"


def test_a_row_forged_with_a_fresh_hash_still_breaks_the_link(database_url: str) -> None:
    from keel.registry.audit import row_hash

    log = _log(database_url, rows=3)
    row = log.rows()[1]
    forged = row_hash(
        row.time,
        "mallory",
        row.action,
        row.object,
        row.before,
        row.after,
        row.reason,
        row.prev_hash,
    )
    _sql(
        log, audit_table.update().where(audit_table.c.seq == 2).values(actor="mallory", hash=forged)
    )
    assert [(p.kind, p.seq) for p in log.verify()] == [("broken", 3)]


def test_concurrent_first_writers_create_the_log_once_and_form_one_unbroken_chain(
    database_url: str,
) -> None:
    context = fork_context()
    start = context.Barrier(WRITERS)
    writers = [
        context.Process(target=append_many, args=(database_url, w, ROWS, start))
        for w in range(WRITERS)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
    assert [w.exitcode for w in writers] == [0] * WRITERS
    log = AuditLog(open_database(database_url))
    assert [r.seq for r in log.rows()] == list(range(1, WRITERS * ROWS + 1))
    assert log.verify() == []
    with log.engine.connect() as conn:
        assert conn.execute(sa.select(head_table.c.count)).scalar_one() == WRITERS * ROWS


def test_before_and_after_are_stored_as_canonical_json(database_url: str) -> None:
    log = _log(database_url, rows=0)
    row = log.append(
        actor="ana", action="promote", obj="credit/v1", before={"b": 1, "a": 2}, after="champion"
    )
    assert row.before == '{"a": 2, "b": 1}' and row.after == "champion"
    assert log.verify() == []
