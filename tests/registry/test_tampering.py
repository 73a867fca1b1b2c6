"""An insider with database access tampers with a signed, checkpointed audit log.

Each attempt is named. Every test builds a log of 8 rows (the key.init row, then 7 approvals)
signed by a key file and checkpointed to a folder, tampers with it through plain SQL or the file
system, and asks a reviewer's fresh :func:`verify_store` (SQLite and PostgreSQL) for the exact
kind and row.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from keel.errors import IntegrityError
from keel.registry.audit import (
    GENESIS,
    KEY_INIT,
    KEY_ROTATE,
    AuditLog,
    AuditRow,
    Problem,
    audit_table,
    head_message,
    head_table,
    open_database,
    row_hash,
    row_message,
    verify_store,
)
from keel.registry.signing import AuditKey, Checkpoint, CheckpointStore, verify_signature


@dataclass
class Keyed:
    """A signed, checkpointed log and where its key file and checkpoints are."""

    url: str
    key_path: Path
    folder: Path
    log: AuditLog

    def found(self, *, key: bool = True, checkpoints: bool = True) -> list[tuple[str, int]]:
        """(kind, seq) of every problem a reviewer finds, with the key file and/or checkpoints."""
        return [(p.kind, p.seq) for p in self.problems(key=key, checkpoints=checkpoints)]

    def problems(self, *, key: bool = True, checkpoints: bool = True) -> list[Problem]:
        return verify_store(
            self.url,
            key=AuditKey.load_or_create(self.key_path) if key else None,
            checkpoints=CheckpointStore(str(self.folder)) if checkpoints else None,
        )

    def sql(self, *statements: sa.Executable) -> None:
        with self.log.engine.begin() as conn:
            for statement in statements:
                conn.execute(statement)

    def rows(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.log.rows()]

    def head(self) -> dict[str, Any]:
        with self.log.engine.connect() as conn:
            return dict(conn.execute(sa.select(head_table)).one()._mapping)

    def put(self, rows: list[dict[str, Any]], head: dict[str, Any]) -> None:
        """Replace both tables' contents, as an insider with write access would."""
        self.sql(
            audit_table.delete(),
            head_table.delete(),
            audit_table.insert().values(rows),
            head_table.insert().values(head),
        )


def _approve(log: AuditLog, i: int) -> AuditRow:
    return log.append(
        actor=f"user{i}",
        action="approve",
        obj=f"credit/v{i}",
        before={"state": "validated"},
        after={"state": "approved"},
        reason=f"note {i}",
    )


def _keyed(url: str, tmp_path: Path, approvals: int = 7) -> Keyed:
    key_path, folder = tmp_path / "keys" / "audit.pem", tmp_path / "checkpoints"
    log = AuditLog(
        open_database(url),
        key=AuditKey.load_or_create(key_path),
        checkpoints=CheckpointStore(str(folder)),
    )
    for i in range(1, approvals + 1):
        _approve(log, i)
    return Keyed(url, key_path, folder, log)


def _rechain(rows: list[dict[str, Any]], signer: AuditKey | None = None) -> list[dict[str, Any]]:
    """Recompute every link and hash (and re-sign with ``signer``), as a careful insider would."""
    prev = GENESIS
    for row in rows:
        row["prev_hash"] = prev
        row["hash"] = prev = row_hash(
            row["time"],
            row["actor"],
            row["action"],
            row["object"],
            row["before"],
            row["after"],
            row["reason"],
            prev,
        )
        if signer is not None:
            row["key_id"], row["signature"] = (
                signer.key_id,
                signer.sign(row_message(row["seq"], row["hash"])),
            )
    return rows


@pytest.fixture
def keyed(database_url: str, tmp_path: Path) -> Keyed:
    return _keyed(database_url, tmp_path)


def test_an_untouched_log_signs_every_row_and_head_checkpoints_each_commit_and_verifies_clean(
    keyed: Keyed,
) -> None:
    key = AuditKey.load_or_create(keyed.key_path)
    rows = keyed.log.rows()
    assert [r.seq for r in rows] == list(range(1, 9)) and rows[0].action == KEY_INIT
    assert all(
        r.key_id == key.key_id
        and verify_signature(key.public_key_hex, row_message(r.seq, r.hash), r.signature)
        for r in rows
    )
    head = keyed.head()
    assert verify_signature(key.public_key_hex, head_message(8, rows[-1].hash), head["signature"])
    assert [(c.seq, c.hash) for c in CheckpointStore(str(keyed.folder)).all()] == [
        (r.seq, r.hash) for r in rows[1:]
    ]
    assert keyed.log.verify() == [] and keyed.found() == []
    assert keyed.found(key=False) == [] and keyed.found(checkpoints=False) == []


def test_an_edited_row_is_named_edited(keyed: Keyed) -> None:
    keyed.sql(audit_table.update().where(audit_table.c.seq == 3).values(actor="mallory"))
    assert keyed.found() == [("edited", 3)]
    assert "row 3 (approve credit/v2 by mallory)" in keyed.problems()[0].detail


def test_a_deleted_middle_row_is_named_deleted(keyed: Keyed) -> None:
    keyed.sql(audit_table.delete().where(audit_table.c.seq == 4))
    assert keyed.found() == [("deleted", 4)]


def test_a_deleted_key_init_row_is_named_deleted_and_the_trusted_key_still_checks_the_rest(
    keyed: Keyed,
) -> None:
    keyed.sql(audit_table.delete().where(audit_table.c.seq == 1))
    assert keyed.found() == [("deleted", 1)]


def test_deleting_the_newest_row_and_rewriting_the_head_to_match_is_named_truncated(
    keyed: Keyed,
) -> None:
    seventh = keyed.log.rows()[6]
    keyed.sql(
        audit_table.delete().where(audit_table.c.seq == 8),
        head_table.update().values(count=7, last_hash=seventh.hash),
    )
    assert keyed.found() == [("truncated", 8)]
    assert (
        "the checkpoint of" in keyed.problems()[0].detail and "says 8" in keyed.problems()[0].detail
    )
    assert keyed.found(checkpoints=False) == [
        ("truncated", 8)
    ]  # the head's signature alone is enough
    assert keyed.found(key=False) == [("truncated", 8)]  # and so are the checkpoints alone


def test_a_rewritten_row_with_every_hash_and_the_head_recomputed_is_named_rehashed(
    keyed: Keyed,
) -> None:
    rows = keyed.rows()
    rows[2]["reason"] = "nothing to see"
    _rechain(rows)
    keyed.put(rows, {**keyed.head(), "last_hash": rows[-1]["hash"]})
    assert keyed.log.verify() == keyed.problems()
    assert keyed.found() == [("rehashed", 3)]
    assert keyed.problems()[0].detail.startswith(
        "rows 3-8 (the first: approve credit/v2 by user2): not signed by key "
    )
    assert keyed.found(checkpoints=False) == [("rehashed", 3)]
    assert keyed.found(key=False) == [("rehashed", 3)]


def test_a_chain_re_signed_with_the_stolen_key_itself_is_caught_by_the_checkpoints(
    keyed: Keyed,
) -> None:
    thief = AuditKey.load_or_create(keyed.key_path)
    rows = keyed.rows()
    rows[2]["reason"] = "nothing to see"
    _rechain(rows, signer=thief)
    keyed.put(
        rows,
        {
            **keyed.head(),
            "last_hash": rows[-1]["hash"],
            "signature": thief.sign(head_message(8, rows[-1]["hash"])),
        },
    )
    assert keyed.found(checkpoints=False) == []  # the key alone cannot tell: it signed the forgery
    assert keyed.found() == [("rehashed", 3)]
    assert "but the checkpoint of" in keyed.problems()[0].detail


def test_a_chain_re_signed_with_a_forged_key_written_into_the_database_is_still_caught(
    keyed: Keyed,
) -> None:
    mallory = AuditKey.generate()
    rows = keyed.rows()
    rows[0]["after"] = f'{{"key_id": "{mallory.key_id}", "public_key": "{mallory.public_key_hex}"}}'
    rows[2]["reason"] = "nothing to see"
    _rechain(rows, signer=mallory)
    keyed.put(
        rows,
        {
            "id": 1,
            "count": 8,
            "last_hash": rows[-1]["hash"],
            "key_id": mallory.key_id,
            "signature": mallory.sign(head_message(8, rows[-1]["hash"])),
        },
    )
    assert keyed.found() == [("rehashed", 1)]
    assert f"signed by key {mallory.key_id}, which is not trusted" in keyed.problems()[0].detail
    assert keyed.found(checkpoints=False) == [("rehashed", 1)]
    assert keyed.found(key=False) == [("rehashed", 1)]


def test_emptied_tables_are_named_emptied_with_the_count_the_checkpoints_remember(
    keyed: Keyed,
) -> None:
    keyed.sql(audit_table.delete(), head_table.delete())
    assert keyed.found() == [("emptied", 1)]
    assert "says there were 8: rows 1-8 were deleted" in keyed.problems()[0].detail


def test_a_deleted_database_file_is_named_missing_and_no_new_chain_starts_over_it(
    tmp_path: Path,
) -> None:
    keyed = _keyed(f"sqlite:///{tmp_path / 'governance.db'}", tmp_path)
    (tmp_path / "governance.db").unlink()
    assert keyed.found() == [("missing", 1)]
    assert keyed.log.verify() == keyed.problems()
    assert "governance.db does not exist, but the checkpoint of" in keyed.problems()[0].detail
    with pytest.raises(IntegrityError, match="refusing to start a new audit chain"):
        AuditLog(
            open_database(keyed.url),
            key=AuditKey.load_or_create(keyed.key_path),
            checkpoints=CheckpointStore(str(keyed.folder)),
        )
    assert not (tmp_path / "governance.db").exists()


def test_dropped_tables_are_named_missing(keyed: Keyed) -> None:
    keyed.sql(sa.text("DROP TABLE keel_audit"), sa.text("DROP TABLE keel_audit_head"))
    assert keyed.found() == [("missing", 1)]
    assert "keel_audit, keel_audit_head do not exist" in keyed.problems()[0].detail
    with open_database(keyed.url).connect() as conn:
        assert not sa.inspect(conn).has_table("keel_audit")


def test_a_restored_older_copy_is_named_rolled_back(database_url: str, tmp_path: Path) -> None:
    keyed = _keyed(database_url, tmp_path, approvals=4)
    sqlite_file = tmp_path / "test.db" if database_url.startswith("sqlite") else None
    if sqlite_file:
        shutil.copy(sqlite_file, tmp_path / "copy.db")
    else:
        rows, head = keyed.rows(), keyed.head()
    for i in range(5, 8):
        _approve(keyed.log, i)
    keyed.log.engine.dispose()
    if sqlite_file:
        shutil.copy(tmp_path / "copy.db", sqlite_file)
    else:
        keyed.put(rows, head)
    assert keyed.found() == [("rolled back", 6)]
    assert keyed.problems()[0].detail.startswith(
        "restored older copy: head at row 5, checkpoint says 8 rows at "
    )


def test_a_row_whose_signature_was_removed_is_named_unsigned(keyed: Keyed) -> None:
    keyed.sql(audit_table.update().where(audit_table.c.seq == 4).values(signature=""))
    assert keyed.found() == [("unsigned", 4)]
    assert keyed.problems()[0].detail.startswith("row 4 (approve credit/v3 by user3): no signature")


def test_a_head_whose_signature_was_removed_is_named_unsigned(keyed: Keyed) -> None:
    keyed.sql(head_table.update().values(signature=""))
    assert keyed.found() == [("unsigned", 8)]


def test_key_rotation_keeps_verification_clean_and_retires_the_old_key(
    database_url: str, tmp_path: Path
) -> None:
    keyed = _keyed(database_url, tmp_path, approvals=3)
    old = AuditKey.load_or_create(keyed.key_path)
    new = AuditKey.load_or_create(tmp_path / "keys" / "new.pem")
    rotation = keyed.log.rotate_key(new, actor="user:security", reason="yearly rotation")
    for i in range(4, 7):
        _approve(keyed.log, i)
    rows = keyed.log.rows()
    assert (rotation.seq, rotation.action, rotation.key_id) == (5, KEY_ROTATE, old.key_id)
    assert [r.key_id for r in rows[5:]] == [new.key_id] * 3
    assert CheckpointStore(str(keyed.folder)).newest().key_id == new.key_id
    os.replace(tmp_path / "keys" / "new.pem", keyed.key_path)  # the key file now holds the new key
    assert keyed.found() == [] and keyed.found(key=False) == [] and keyed.log.verify() == []
    stale = AuditLog(
        open_database(database_url), key=old, checkpoints=CheckpointStore(str(keyed.folder))
    )
    with pytest.raises(
        IntegrityError,
        match=f"signed by key {new.key_id}, but this AuditLog holds key {old.key_id}",
    ):
        _approve(stale, 99)


def test_a_rotation_to_a_key_the_old_key_did_not_sign_is_not_trusted(keyed: Keyed) -> None:
    mallory = AuditKey.generate()
    rows = keyed.rows()
    rotation = {
        **rows[-1],
        "seq": 9,
        "actor": "mallory",
        "action": KEY_ROTATE,
        "object": "audit-key/x",
        "before": "",
        "after": f'{{"key_id": "{mallory.key_id}", "public_key": "{mallory.public_key_hex}"}}',
    }
    rows = _rechain([*rows, rotation, {**rows[-1], "seq": 10, "actor": "mallory"}])
    for row in rows[8:]:
        row["key_id"], row["signature"] = (
            mallory.key_id,
            mallory.sign(row_message(row["seq"], row["hash"])),
        )
    keyed.put(
        rows,
        {
            "id": 1,
            "count": 10,
            "last_hash": rows[-1]["hash"],
            "key_id": mallory.key_id,
            "signature": mallory.sign(head_message(10, rows[-1]["hash"])),
        },
    )
    problems = keyed.problems()
    assert [(p.kind, p.seq) for p in problems] == [("rehashed", 9), ("rehashed", 10)]
    assert problems[0].detail.startswith(
        "row 9 (key.rotate audit-key/x by mallory): not signed by key "
    )
    assert f"signed by key {mallory.key_id}, which is not trusted" in problems[1].detail


def test_the_key_file_is_created_0600_and_a_group_readable_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "keys" / "audit.pem"
    key = AuditKey.load_or_create(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert AuditKey.load_or_create(path).key_id == key.key_id and len(key.key_id) == 16
    signature = key.sign(b"hello")
    assert verify_signature(key.public_key_hex, b"hello", signature)
    assert not verify_signature(key.public_key_hex, b"hellO", signature)
    assert not verify_signature(AuditKey.generate().public_key_hex, b"hello", signature)
    assert [p.name for p in path.parent.iterdir()] == ["audit.pem"]  # no temporary file left behind
    path.chmod(0o644)
    with pytest.raises(
        IntegrityError, match="has mode 0644, but it must be readable by its owner only"
    ):
        AuditKey.load_or_create(path)


def test_verify_store_without_a_database_or_checkpoints_raises_and_creates_nothing(
    database_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "checkpoints"
    with pytest.raises(IntegrityError, match="no governance store at"):
        verify_store(
            database_url, key=AuditKey.generate(), checkpoints=CheckpointStore(str(folder))
        )
    assert not (tmp_path / "test.db").exists() and not folder.exists()
    if not database_url.startswith("sqlite"):
        engine = open_database(database_url)
        assert sa.inspect(engine).get_table_names() == []
        engine.dispose()


def test_appends_inside_a_callers_transaction_leave_the_checkpoint_to_the_caller(
    keyed: Keyed,
) -> None:
    store = CheckpointStore(str(keyed.folder))
    with keyed.log.engine.begin() as conn:
        keyed.log.lock(conn)
        _ = keyed.log.append(actor="ana", action="promote", obj="credit/v1", connection=conn)
    assert store.newest().seq == 8
    assert keyed.log.checkpoint().seq == 9 and store.newest().seq == 9
    assert keyed.log.checkpoint() is None  # the newest checkpoint has that seq already


def test_an_unkeyed_writer_cannot_append_to_a_signed_log(keyed: Keyed) -> None:
    with pytest.raises(IntegrityError, match="is signed .* open it with its key file"):
        _approve(AuditLog(open_database(keyed.url)), 99)
    assert len(keyed.log.rows()) == 8


def test_checkpoints_are_append_only_and_a_bad_checkpoint_file_is_reported(keyed: Keyed) -> None:
    store = CheckpointStore(str(keyed.folder))
    newest = store.newest()
    assert store.write(newest) is False  # never overwritten
    forged = Checkpoint(**{**asdict(newest), "seq": 9, "signature": newest.signature})
    assert store.write(forged) is True
    (keyed.folder / "000000000010-junk.json").write_text("{not json")
    assert keyed.found() == [("checkpoint", 9), ("checkpoint", 10)]
    assert "000000000010-junk.json is malformed: not JSON" in keyed.problems()[1].detail


def test_a_checkpoint_store_works_on_any_fsspec_url() -> None:
    store = CheckpointStore(f"memory://keel-{uuid.uuid4().hex}")
    key = AuditKey.generate()
    assert store.all() == [] and store.newest() is None
    first, second = Checkpoint.sign(2, "a" * 64, key), Checkpoint.sign(10, "b" * 64, key)
    assert store.write(second) and store.write(first) and not store.write(first)
    assert (
        [c.seq for c in store.all()] == [2, 10] and store.newest() == second and second.is_valid()
    )


def test_a_log_written_before_signing_gets_the_columns_and_is_sealed_by_its_key_init_row(
    database_url: str, tmp_path: Path
) -> None:
    legacy = sa.MetaData()
    for table in (audit_table, head_table):
        sa.Table(
            table.name,
            legacy,
            *[c.copy() for c in table.c if c.name not in ("key_id", "signature")],
        )
    engine = open_database(database_url)
    legacy.create_all(engine)
    rows = _rechain(
        [
            {
                "seq": i,
                "time": f"2024-01-0{i}",
                "actor": "old",
                "action": "approve",
                "object": f"m/v{i}",
                "before": "",
                "after": "",
                "reason": "",
            }
            for i in (1, 2)
        ]
    )
    with engine.begin() as conn:
        conn.execute(sa.insert(legacy.tables["keel_audit"]), rows)
        conn.execute(
            sa.insert(legacy.tables["keel_audit_head"]).values(
                id=1, count=2, last_hash=rows[-1]["hash"]
            )
        )
    engine.dispose()
    assert verify_store(database_url) == []  # read as it is, columns missing
    keyed = _keyed(database_url, tmp_path, approvals=2)
    assert [(r.seq, r.action, bool(r.signature)) for r in keyed.log.rows()] == [
        (1, "approve", False),
        (2, "approve", False),
        (3, KEY_INIT, True),
        (4, "approve", True),
        (5, "approve", True),
    ]
    assert keyed.found() == []
