"""The server loads the audited champion via the registry's hash check, and says what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.errors import IntegrityError, RegistryError
from keel.lifecycle.run import run_project
from keel.registry.governance import Governance
from keel.serving.loader import alias_disagreement, load_alias
from keel.spec import load_spec

from people import crown, enrol

pytestmark = pytest.mark.slow


def test_load_alias_serves_the_audited_champion_and_refuses_tampered_files(
    loans_project: Path,
) -> None:
    project_dir = loans_project.parent / ".keel"
    people = enrol(project_dir)
    run_project(
        load_spec(loans_project), project_dir=project_dir, principal=people.dev, with_card=False
    )
    governance = people.service.governance

    governance.registry.set_alias("loans", "champion", 1)  # by hand: the mirror is not the truth
    with pytest.raises(RegistryError, match="the audit log gives model 'loans' no champion"):
        load_alias(governance, "loans")
    assert alias_disagreement(governance, "loans") == 1
    crown(people, "loans", 1)
    engine = load_alias(governance, "loans")
    assert alias_disagreement(governance, "loans") is None
    source = Path(governance.registry.version("loans", 1).source.removeprefix("file://"))
    model_file = next(p for p in source.iterdir() if p.name != "model.json")
    model_file.write_bytes(model_file.read_bytes() + b"\n")

    assert (engine.name, engine.version) == ("loans", 1)
    with pytest.raises(IntegrityError, match="sha256"):
        load_alias(governance, "loans")


def test_a_registry_fingerprint_swapped_to_match_other_files_is_refused(
    loans_project: Path,
) -> None:
    project_dir = loans_project.parent / ".keel"
    people = enrol(project_dir)
    run_project(
        load_spec(loans_project), project_dir=project_dir, principal=people.dev, with_card=False
    )
    crown(people, "loans", 1)
    governance = people.service.governance
    governance.registry.set_version_tag("loans", 1, "model_sha256", "0" * 64)
    with pytest.raises(
        IntegrityError, match="is not the .* the audit log recorded at registration"
    ):
        load_alias(governance, "loans")


def test_only_governed_aliases_are_served(loans_project: Path) -> None:
    people = enrol(loans_project.parent / ".keel")
    with pytest.raises(RegistryError, match="'staging' is not a governed alias"):
        load_alias(people.service.governance, "loans", "staging")


def test_a_promotion_row_inserted_by_sql_moves_nothing_that_serves(loans_project: Path) -> None:
    """An insider with database access writes a 'promote' row for another version.

    The server keeps its own.
    """
    import sqlalchemy as sa

    from keel.registry.audit import audit_table, head_table
    from keel.serving.server import load_verified

    project_dir = loans_project.parent / ".keel"
    people = enrol(project_dir)
    spec = load_spec(loans_project)
    for _ in range(2):
        run_project(spec, project_dir=project_dir, principal=people.dev, with_card=False)
    crown(people, "loans", 1)
    governance = Governance.for_project(project_dir, writer=False)
    assert load_verified(governance, "loans", "champion").version == 1
    with governance.audit.engine.begin() as conn:
        seq = conn.execute(sa.select(sa.func.max(audit_table.c.seq))).scalar_one() + 1
        conn.execute(
            audit_table.insert().values(
                seq=seq,
                time="2026-01-01T00:00:00+00:00",
                actor="user:x",
                action="promote",
                object="loans/v2",
                before="{}",
                after='{"state": "champion"}',
                reason="",
                prev_hash="0" * 64,
                hash="0" * 64,
                key_id="",
                signature="",
            )
        )
        conn.execute(head_table.update().values(count=seq))
    assert governance.ledger().model("loans").champion == 2  # what the rows now claim
    with pytest.raises(IntegrityError, match="the audit log does not verify"):
        load_verified(governance, "loans", "champion")
