"""The audit log catches an edited, a deleted and a reordered row, and names each."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from keel.registry.audit import GENESIS, AuditLog, audit_table, head_table, make_engine


def _log(tmp_path: Path, rows: int = 5) -> AuditLog:
    log = AuditLog(make_engine(f"sqlite:///{tmp_path / 'audit.db'}"))
    for i in range(1, rows + 1):
        log.append(actor=f"user{i}", action="approve", obj=f"credit/v{i}", before={"state": "validated"},
                   after={"state": "approved"}, reason=f"note {i}")
    return log


def _sql(log: AuditLog, statement: sa.Executable) -> None:
    with log.engine.begin() as conn:
        conn.execute(statement)


def test_an_untouched_chain_verifies_and_links_every_row(tmp_path: Path) -> None:
    log = _log(tmp_path)
    rows = log.rows()
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(rows, rows[1:]))
    assert log.verify() == []


def test_verify_names_an_edited_row(tmp_path: Path) -> None:
    log = _log(tmp_path)
    _sql(log, audit_table.update().where(audit_table.c.seq == 3).values(actor="mallory"))
    problems = log.verify()
    assert [(p.kind, p.seq) for p in problems] == [("edited", 3)]
    assert "row 3 (approve credit/v3 by mallory)" in problems[0].detail


def test_verify_names_a_deleted_row(tmp_path: Path) -> None:
    log = _log(tmp_path)
    _sql(log, audit_table.delete().where(audit_table.c.seq == 2))
    problems = log.verify()
    assert [(p.kind, p.seq) for p in problems] == [("deleted", 2)]
    assert "row(s) [2] are missing before row 3" in problems[0].detail


def test_verify_names_deleted_newest_rows_through_the_head(tmp_path: Path) -> None:
    log = _log(tmp_path)
    _sql(log, audit_table.delete().where(audit_table.c.seq >= 4))
    assert [(p.kind, p.seq) for p in log.verify()] == [("deleted", 4)]


def test_verify_names_reordered_rows(tmp_path: Path) -> None:
    log = _log(tmp_path)
    _sql(log, audit_table.update().where(audit_table.c.seq == 3).values(seq=-3))
    _sql(log, audit_table.update().where(audit_table.c.seq == 4).values(seq=3))
    _sql(log, audit_table.update().where(audit_table.c.seq == -3).values(seq=4))
    problems = log.verify()
    assert [(p.kind, p.seq) for p in problems] == [("reordered", 3), ("reordered", 4), ("reordered", 5)]
    assert problems[0].detail == "row 3 was written after row 4, not after row 2"


def test_a_row_forged_with_a_fresh_hash_still_breaks_the_link(tmp_path: Path) -> None:
    from keel.registry.audit import row_hash

    log = _log(tmp_path, rows=3)
    row = log.rows()[1]
    forged = row_hash(row.time, "mallory", row.action, row.object, row.before, row.after, row.reason, row.prev_hash)
    _sql(log, audit_table.update().where(audit_table.c.seq == 2).values(actor="mallory", hash=forged))
    assert [(p.kind, p.seq) for p in log.verify()] == [("broken", 3)]


APPEND_MANY = """
import sys
from keel.registry.audit import AuditLog, make_engine
log = AuditLog(make_engine(sys.argv[1]))
for i in range(int(sys.argv[3])):
    log.append(actor="w" + sys.argv[2], action="test", obj=f"o{i}")
"""


def test_concurrent_writers_form_one_unbroken_chain(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    AuditLog(make_engine(url))
    workers = [subprocess.Popen([sys.executable, "-c", APPEND_MANY, url, str(w), "15"]) for w in range(4)]
    assert [w.wait(timeout=120) for w in workers] == [0, 0, 0, 0]
    log = AuditLog(make_engine(url))
    assert [r.seq for r in log.rows()] == list(range(1, 61))
    assert log.verify() == []
    with log.engine.connect() as conn:
        assert conn.execute(sa.select(head_table.c.count)).scalar_one() == 60


def test_before_and_after_are_stored_as_canonical_json(tmp_path: Path) -> None:
    log = _log(tmp_path, rows=0)
    row = log.append(actor="ana", action="promote", obj="credit/v1", before={"b": 1, "a": 2}, after="champion")
    assert row.before == '{"a": 2, "b": 1}' and row.after == "champion"
    assert log.verify() == []
