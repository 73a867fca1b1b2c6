"""The lifecycle from the command line: the caller is KEEL_TOKEN's owner, never a typed name."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from keel.cli.main import app
from keel.registry.audit import audit_table, row_hash

from people import PASSWORD, People, enrol

pytestmark = pytest.mark.slow


def _keel(*args: str, token: str | None = None, stdin: str | None = None) -> object:
    env = {"KEEL_TOKEN": token} if token else {"KEEL_TOKEN": ""}
    return CliRunner().invoke(app, list(args), env=env, input=stdin)


@pytest.fixture()
def trained(loans_project: Path) -> tuple[Path, People]:
    """The loans project with its four people, and version 1 trained by ana with her token."""
    people = enrol(loans_project.parent / ".keel")
    ran = _keel("train", str(loans_project), "-q", token=people.tokens["ana"])
    assert ran.exit_code == 0, ran.output
    return loans_project, people


def test_keel_run_with_a_token_registers_an_approvable_version_and_without_one_an_unverified_one(
    trained: tuple[Path, People],
) -> None:
    spec, people = trained
    unverified = _keel("train", str(spec), "-q", "--author", "vera")  # typing a name proves nothing
    assert unverified.exit_code == 0 and "Author unverified" in unverified.output
    models = {v["version"]: v for v in people.service.models(people.val)[0]["versions"]}
    assert models[1]["author"] == "ana" and models[1]["author_verified"]
    assert models[2]["author"] == "vera" and not models[2]["author_verified"]
    refused = _keel(
        "approve", "2", "--note", "ok", "--spec", str(spec), token=people.tokens["vera"]
    )
    assert refused.exit_code == 8 and "without an authenticated author" in refused.stderr


def test_there_is_no_option_to_say_who_you_are(trained: tuple[Path, People]) -> None:
    spec, people = trained
    typed = _keel(
        "approve", "1", "--by", "vera", "--role", "validator", "--note", "ok", "--spec", str(spec)
    )
    assert typed.exit_code == 2 and "No such option" in typed.output
    anonymous = _keel("approve", "1", "--note", "ok", "--spec", str(spec))
    assert anonymous.exit_code == 14 and "needs an API token" in anonymous.stderr
    forged = _keel("approve", "1", "--note", "ok", "--spec", str(spec), token="keel_0000_forged")
    assert forged.exit_code == 14


def test_cli_lifecycle_with_tokens_and_audit_verify(trained: tuple[Path, People]) -> None:
    spec, people = trained
    where = ["--spec", str(spec)]
    own = _keel("approve", "1", "--note", "ok", *where, token=people.tokens["ana"])
    assert own.exit_code == 8 and "ana may not approve" in own.stderr
    approved = _keel(
        "approve",
        "1",
        "--note",
        "reasons read",
        "--conditions",
        "monitor monthly",
        *where,
        token=people.tokens["vera"],
    )
    assert approved.exit_code == 0, approved.stderr
    assert "validated -> approved" in approved.output
    promoted = _keel("promote", "1", *where, token=people.tokens["dan"])
    assert promoted.exit_code == 0 and "approved -> champion" in promoted.output
    listed = _keel("audit", "list", "--action", "approve", *where, token=people.tokens["dan"])
    assert listed.exit_code == 0 and "vera" in listed.output
    assert _keel("audit", "verify", *where).exit_code == 0

    engine = sa.create_engine(f"sqlite:///{spec.parent / '.keel' / 'governance.db'}")
    with engine.begin() as conn:
        seq = conn.execute(
            sa.select(audit_table.c.seq).where(audit_table.c.action == "approve")
        ).scalar_one()
        conn.execute(
            audit_table.update().where(audit_table.c.seq == seq).values(reason="rubber stamp")
        )
    broken = _keel("audit", "verify", *where)
    assert broken.exit_code == 9
    assert f"edited row {seq}" in broken.stderr


def test_users_and_tokens_from_the_cli(loans_project: Path) -> None:
    where = ["--project-dir", str(loans_project.parent / ".keel")]
    first = _keel(
        "users", "add", "root", "--role", "admin", "--password-stdin", *where, stdin=PASSWORD + "\n"
    )
    assert first.exit_code == 0, first.output
    second = _keel(
        "users", "add", "eve", "--role", "admin", "--password-stdin", *where, stdin=PASSWORD + "\n"
    )
    assert second.exit_code == 14  # after the first admin, adding users needs an admin's token
    token = _keel(
        "token", "create", "--user", "root", "--password-stdin", *where, stdin=PASSWORD + "\n"
    )
    assert token.exit_code == 0, token.output
    root = token.stdout.strip().splitlines()[0]
    added = _keel(
        "users",
        "add",
        "vera",
        "--role",
        "validator",
        "--password-stdin",
        *where,
        token=root,
        stdin=PASSWORD + "\n",
    )
    assert added.exit_code == 0 and "added user vera (validator)" in added.output
    clash = _keel(
        "users",
        "add",
        "Vera",
        "--role",
        "validator",
        "--password-stdin",
        *where,
        token=root,
        stdin=PASSWORD + "\n",
    )
    assert clash.exit_code == 2
    listed = _keel("users", "list", *where, token=root)
    assert listed.exit_code == 0 and "vera" in listed.output and "validator" in listed.output
    wrong = _keel(
        "token", "create", "--user", "vera", "--password-stdin", *where, stdin="not the password\n"
    )
    assert wrong.exit_code == 14 and "wrong user name or password" in wrong.stderr


def test_a_project_dir_one_folder_off_is_an_error_not_an_intact_empty_log(
    trained: tuple[Path, People], tmp_path: Path
) -> None:
    off = tmp_path / "elsewhere"
    verified = _keel("audit", "verify", "--project-dir", str(off))
    assert verified.exit_code != 0 and "intact" not in verified.output
    assert "no governance store" in verified.stderr
    assert not (off / "governance.db").exists()


def _tamper(project_dir: Path, how: str) -> None:
    """One insider's move on a project's governance.db."""
    database = project_dir / "governance.db"
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.begin() as conn:
        if how == "emptied":
            conn.execute(sa.text("DELETE FROM keel_audit"))
            conn.execute(sa.text("DELETE FROM keel_audit_head"))
        elif how == "dropped":
            conn.execute(sa.text("DROP TABLE keel_audit"))
        if how in ("truncated", "rehashed"):
            rows = [
                dict(r._mapping)
                for r in conn.execute(sa.select(audit_table).order_by(audit_table.c.seq))
            ]
            if how == "truncated":  # drop the newest row and make the head match the one before
                conn.execute(sa.delete(audit_table).where(audit_table.c.seq == rows[-1]["seq"]))
                conn.execute(
                    sa.text("UPDATE keel_audit_head SET count = :c, last_hash = :h"),
                    {"c": rows[-2]["seq"], "h": rows[-2]["hash"]},
                )
            else:  # rewrite one reason and recompute every hash after it, and the head
                prev = rows[0]["prev_hash"]
                for row in rows:
                    if row["action"] == "approve":
                        row["reason"] = "rubber stamp"
                    row["prev_hash"], row["hash"] = (
                        prev,
                        row_hash(
                            row["time"],
                            row["actor"],
                            row["action"],
                            row["object"],
                            row["before"],
                            row["after"],
                            row["reason"],
                            prev,
                        ),
                    )
                    conn.execute(
                        sa.update(audit_table)
                        .where(audit_table.c.seq == row["seq"])
                        .values(reason=row["reason"], prev_hash=row["prev_hash"], hash=row["hash"])
                    )
                    prev = row["hash"]
                conn.execute(sa.text("UPDATE keel_audit_head SET last_hash = :h"), {"h": prev})
    engine.dispose()
    if how == "deleted":
        database.unlink()


@pytest.mark.parametrize(
    "how, named",
    [
        ("emptied", "emptied"),
        ("dropped", "missing"),
        ("deleted", "missing"),
        ("restored", "rolled back"),
        ("truncated", "truncated"),
        ("rehashed", "rehashed"),
    ],
)
def test_keel_audit_verify_names_a_lost_or_restored_log_and_exits_9(
    trained: tuple[Path, People], how: str, named: str
) -> None:
    spec, people = trained
    project_dir = spec.parent / ".keel"
    old_copy = (project_dir / "governance.db").read_bytes()
    assert (
        _keel(
            "approve", "1", "--note", "ok", "--spec", str(spec), token=people.tokens["vera"]
        ).exit_code
        == 0
    )
    if how == "restored":
        (project_dir / "governance.db").write_bytes(old_copy)  # the copy from before the approval
    else:
        _tamper(project_dir, how)
    verified = _keel("audit", "verify", "--spec", str(spec))
    assert verified.exit_code == 9, verified.output
    assert named in verified.stderr


def test_an_admin_rotates_the_audit_key_and_the_log_still_verifies(
    trained: tuple[Path, People],
) -> None:
    spec, people = trained
    where = ["--spec", str(spec)]
    refused = _keel("audit", "rotate-key", "--note", "yearly", *where, token=people.tokens["vera"])
    assert refused.exit_code == 8 and "vera may not rotate the audit key" in refused.stderr
    rotated = _keel("audit", "rotate-key", "--note", "yearly", *where, token=people.tokens["root"])
    assert rotated.exit_code == 0, rotated.output + rotated.stderr
    keys = spec.parent / ".keel" / "keys"
    assert oct((keys / "audit.key").stat().st_mode & 0o777) == "0o600"
    assert len(list(keys.glob("audit.key.*.retired"))) == 1
    assert _keel("approve", "1", "--note", "ok", *where, token=people.tokens["vera"]).exit_code == 0
    verified = _keel("audit", "verify", *where)
    assert verified.exit_code == 0, verified.stderr
