"""Four eyes, gates that block, champion promotion and rollback, all audited, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from backends import Store
from factories import register_version
from typer.testing import CliRunner

from keel.cli.main import app
from keel.errors import IntegrityError
from keel.lifecycle.run import run_project
from keel.registry.audit import audit_table
from keel.registry.governance import Governance, GovernanceError
from keel.spec import load_spec

pytestmark = pytest.mark.slow
FAILED_AUC = [{"name": "min_auc", "threshold": 0.99, "value": 0.7, "passed": False}]


def _train(spec_path: Path, times: int = 1, author: str = "ana") -> Governance:
    spec = load_spec(spec_path)
    for _ in range(times):
        run_project(spec, project_dir=spec_path.parent / ".keel", author=author, with_card=False)
    return Governance.for_project(spec_path.parent / ".keel")


def _governance(store: Store, saved_model: Path, versions: int = 1) -> Governance:
    governance = store.governance()
    for _ in range(versions):
        register_version(governance, saved_model, author="ana")
    return governance


def test_keel_run_registers_a_version_whose_gates_pass_as_validated_and_audits_it(loans_project: Path) -> None:
    governance = _train(loans_project)
    info = governance.registry.version("loans", 1)
    assert governance.state(info) == "validated"
    [row] = governance.history("loans")
    assert (row.action, row.object, row.actor) == ("register", "loans/v1", "ana")


def test_keel_run_registers_a_gate_failing_version_as_a_candidate(loans_project: Path) -> None:
    raw = yaml.safe_load(loans_project.read_text())
    raw["gates"] = {"min_auc": 0.99}
    loans_project.write_text(yaml.safe_dump(raw))
    governance = _train(loans_project)
    assert governance.state(governance.registry.version("loans", 1)) == "candidate"


def test_keel_run_and_approve_keep_runs_and_audit_rows_where_the_spec_says(store: Store, loans_project: Path) -> None:
    raw = yaml.safe_load(loans_project.read_text())
    raw["registry"] = {"tracking_uri": store.tracking_uri, "governance_uri": store.governance_uri}
    loans_project.write_text(yaml.safe_dump(raw))
    runner = CliRunner()
    folder = ["--project-dir", str(store.project_dir)]

    ran = runner.invoke(app, ["train", str(loans_project), *folder, "--author", "ana", "-q"])
    approved = runner.invoke(app, ["approve", "1", "--by", "bo", "--role", "validator", "--note", "ok",
                                   "--spec", str(loans_project), *folder])

    assert ran.exit_code == 0, ran.output
    assert approved.exit_code == 0, approved.output
    governance = store.governance()
    assert [row.action for row in governance.history("loans")] == ["register", "approve"]
    assert governance.state(governance.registry.version("loans", 1)) == "approved"


def test_self_approval_is_refused(store: Store, saved_model: Path) -> None:
    governance = _governance(store, saved_model)
    with pytest.raises(GovernanceError, match="four-eyes rule: ana is the author of loans/v1"):
        governance.approve("loans", 1, by="ana", role="validator", note="looks fine")
    assert governance.state(governance.registry.version("loans", 1)) == "validated"


def test_approval_needs_the_validator_role_and_a_note(store: Store, saved_model: Path) -> None:
    governance = _governance(store, saved_model)
    with pytest.raises(GovernanceError, match="only a validator may approve; the role given is 'deployer'"):
        governance.approve("loans", 1, by="bo", role="deployer", note="ok")
    with pytest.raises(GovernanceError, match="role 'boss' is not one of developer, validator, deployer"):
        governance.approve("loans", 1, by="bo", role="boss", note="ok")
    with pytest.raises(GovernanceError, match="needs a note"):
        governance.approve("loans", 1, by="bo", role="validator", note=" ")
    assert [row.action for row in governance.history("loans")] == ["register"]


def test_a_gate_failing_version_cannot_be_approved_or_promoted(store: Store, saved_model: Path) -> None:
    governance = store.governance()
    info = register_version(governance, saved_model, gates=FAILED_AUC)
    assert governance.state(info) == "candidate"
    with pytest.raises(GovernanceError, match=r"'candidate', not 'validated'.*\(failed or not evaluated: min_auc\)"):
        governance.approve("loans", 1, by="bo", role="validator", note="reviewed")
    with pytest.raises(GovernanceError, match="only an approved version can be promoted"):
        governance.promote("loans", 1, by="dee", role="deployer")


def test_promoting_an_unapproved_version_is_refused(store: Store, saved_model: Path) -> None:
    governance = _governance(store, saved_model)
    with pytest.raises(GovernanceError, match="'validated'; only an approved version can be promoted"):
        governance.promote("loans", 1, by="dee", role="deployer")
    assert governance.champion("loans") is None


def test_promotion_retires_the_old_champion_and_rollback_restores_it(store: Store, saved_model: Path) -> None:
    governance = _governance(store, saved_model, versions=2)
    for version in (1, 2):
        governance.approve("loans", version, by="bo", role="validator", note="validation report reviewed")
    governance.promote("loans", 1, by="dee", role="deployer")
    assert governance.champion("loans").version == 1
    governance.promote("loans", 2, by="dee", role="deployer")
    assert governance.champion("loans").version == 2
    assert governance.state(governance.registry.version("loans", 1)) == "retired"

    governance.rollback("loans", by="dee", role="deployer", reason="v2 misbehaves")

    assert governance.champion("loans").version == 1
    assert governance.state(governance.registry.version("loans", 2)) == "retired"
    actions = [(r.action, r.object) for r in store.governance().history("loans")]
    assert actions == [("register", "loans/v1"), ("register", "loans/v2"), ("approve", "loans/v1"),
                       ("approve", "loans/v2"), ("promote", "loans/v1"), ("promote", "loans/v2"),
                       ("rollback", "loans/v1")]
    assert governance.audit.verify() == []


def test_a_tampered_artifact_is_refused_while_the_champion_still_loads(store: Store, saved_model: Path) -> None:
    governance = _governance(store, saved_model, versions=2)
    governance.approve("loans", 1, by="bo", role="validator", note="reviewed")
    governance.promote("loans", 1, by="dee", role="deployer")
    source = Path(governance.registry.version("loans", 2).source.removeprefix("file://"))
    assert source.is_relative_to(store.project_dir)
    manifest = source / "model.json"
    manifest.write_text(manifest.read_text().replace('"threshold": 0.5', '"threshold": 0.1'))

    with pytest.raises(IntegrityError, match="does not match the registered"):
        governance.registry.load_model("loans", 2)
    model, info = governance.registry.load_model("loans", governance.champion("loans").version)
    assert info.version == 1 and model.threshold == 0.5


def test_cli_lifecycle_and_audit_verify(loans_project: Path) -> None:
    _train(loans_project)
    runner = CliRunner()
    spec = ["--spec", str(loans_project)]

    refused = runner.invoke(app, ["approve", "1", "--by", "ana", "--role", "validator", "--note", "ok", *spec])
    assert refused.exit_code == 8 and "four-eyes rule" in refused.stderr
    approved = runner.invoke(app, ["approve", "1", "--by", "bo", "--role", "validator", "--note", "ok", *spec])
    assert approved.exit_code == 0, approved.stderr
    assert "validated -> approved" in approved.output
    promoted = runner.invoke(app, ["promote", "1", "--by", "dee", *spec])
    assert promoted.exit_code == 0 and "approved -> champion" in promoted.output
    history = runner.invoke(app, ["models", "history", *spec])
    assert history.exit_code == 0 and "promote" in history.output
    assert runner.invoke(app, ["audit", "verify", *spec]).exit_code == 0

    engine = sa.create_engine(f"sqlite:///{loans_project.parent / '.keel' / 'governance.db'}")
    with engine.begin() as conn:
        conn.execute(audit_table.update().where(audit_table.c.seq == 2).values(reason="rubber stamp"))
    broken = runner.invoke(app, ["audit", "verify", *spec])
    assert broken.exit_code == 9
    assert "edited row 2" in broken.stderr
