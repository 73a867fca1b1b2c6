"""Governance as a control, on SQLite and PostgreSQL.

Authenticated people, four eyes and separation of duties, a policy the developer does not own,
and the audit log (not MLflow) as the one source of truth.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from keel.errors import IntegrityError
from keel.registry.governance import Governance, GovernanceError
from keel.registry.principal import PermissionDenied, Principal

from backends import Store
from factories import register_version
from people import People, crown, enrol

pytestmark = pytest.mark.slow


@pytest.fixture()
def people(store: Store) -> People:
    """root (admin), ana (developer), vera (validator), dan (deployer).

    They are enrolled in the store's governance tables.
    """
    return enrol(store.project_dir, store.tracking_uri, store.governance_uri)


def _registered(
    people: People, saved_model: Path, versions: int = 1, **kwargs: object
) -> Governance:
    governance = people.service.governance
    for _ in range(versions):
        register_version(governance, saved_model, author=people.dev, **kwargs)  # type: ignore[arg-type]
    return governance


def _both(people: People, name: str, roles: list[str]) -> Principal:
    admin = people.users["root"]
    people.service.users.add(name, roles, "correct horse battery staple", by=admin)
    return people.service.users.authenticate_password(name, "correct horse battery staple")


def _actions(governance: Governance) -> list[str]:
    return [row.action for row in governance.history("loans")]


def test_self_approval_is_refused_by_user_id_even_for_an_author_who_is_also_a_validator(
    people: People, saved_model: Path
) -> None:
    governance = people.service.governance
    author = _both(people, "mia", ["developer", "validator"])
    register_version(governance, saved_model, author=author)
    with pytest.raises(GovernanceError, match="four-eyes rule: mia is the author of loans/v1"):
        governance.approve("loans", 1, by=author, note="looks fine")
    assert governance.state(governance.registry.version("loans", 1)) == "validated"
    assert _actions(governance) == ["register", "refused"]


def test_a_version_registered_without_an_authenticated_author_can_never_be_approved(
    people: People, saved_model: Path
) -> None:
    governance = people.service.governance
    register_version(governance, saved_model, author=None)  # keel run without KEEL_TOKEN
    with pytest.raises(GovernanceError, match="registered without an authenticated author"):
        governance.approve("loans", 1, by=people.val, note="ok")


def test_each_transition_needs_its_role_and_a_note(people: People, saved_model: Path) -> None:
    governance = _registered(people, saved_model)
    with pytest.raises(PermissionDenied, match="dan may not approve: it needs the role validator"):
        governance.approve("loans", 1, by=people.dep, note="ok")
    with pytest.raises(PermissionDenied, match="vera may not promote"):
        governance.promote("loans", 1, by=people.val)
    with pytest.raises(GovernanceError, match="needs a note"):
        governance.approve("loans", 1, by=people.val, note=" ")
    assert _actions(governance) == ["register", "refused", "refused", "refused"]


def test_the_approver_cannot_also_deploy_unless_the_policy_allows_it_and_the_author_never(
    people: People, saved_model: Path
) -> None:
    governance = people.service.governance
    both = _both(people, "val2", ["validator", "deployer"])
    register_version(governance, saved_model, author=people.dev)
    governance.approve("loans", 1, by=both, note="reviewed")
    with pytest.raises(GovernanceError, match="separation of duties: val2 approved loans/v1"):
        governance.promote("loans", 1, by=both)
    governance.set_policy(by=people.val, reason="small team", deployer_may_approve=True)
    assert governance.promote("loans", 1, by=both).after == "champion"

    writer = _both(people, "dev2", ["developer", "deployer"])
    register_version(governance, saved_model, author=writer)
    governance.approve("loans", 2, by=people.val, note="reviewed")
    with pytest.raises(
        GovernanceError, match="dev2 is the author of loans/v2 and cannot promote it"
    ):
        governance.promote("loans", 2, by=writer)


def test_the_policy_sets_gate_floors_a_spec_cannot_loosen_and_each_decision_records_its_version(
    people: People, saved_model: Path
) -> None:
    governance = people.service.governance
    policy = governance.set_policy(by=people.val, reason="bank floor", thresholds={"min_auc": 0.75})
    assert policy.version == 1
    # the developer's spec asks only min_auc 0.5: the policy's 0.75 applies, so AUC 0.7 fails
    info = register_version(governance, saved_model, author=people.dev, thresholds={"min_auc": 0.5})
    assert governance.state(info) == "candidate"
    with pytest.raises(GovernanceError, match="'candidate'; only a validated version"):
        governance.approve("loans", 1, by=people.val, note="ok")

    register_version(governance, saved_model, author=people.dev, thresholds={"min_auc": 0.5})
    governance.set_policy(
        by=people.val, reason="floor lowered after review", thresholds={"min_auc": 0.65}
    )
    register_version(governance, saved_model, author=people.dev, thresholds={"min_auc": 0.5})
    approved = governance.approve(
        "loans", 3, by=people.val, note="ok", conditions="re-validate in 6 months"
    )
    row = governance.history("loans")[-1]
    assert (
        approved.after == "approved"
        and '"policy": 2' in row.after
        and "re-validate in 6 months" in row.after
    )
    with pytest.raises(PermissionDenied, match="ana may not change the policy"):
        governance.set_policy(by=people.dev, reason="loosen", thresholds={})
    with pytest.raises(GovernanceError, match="unknown gate"):
        governance.set_policy(by=people.val, reason="typo", thresholds={"min_aux": 0.7})


def test_a_policy_tightened_after_registration_blocks_the_approval(
    people: People, saved_model: Path
) -> None:
    governance = _registered(people, saved_model)
    governance.set_policy(by=people.val, reason="stricter", thresholds={"min_auc": 0.8})
    with pytest.raises(GovernanceError, match="fails policy v1's gates: min_auc"):
        governance.approve("loans", 1, by=people.val, note="ok")


def test_reject_ends_a_version_and_refusals_are_audited(people: People, saved_model: Path) -> None:
    governance = _registered(people, saved_model)
    assert (
        governance.reject("loans", 1, by=people.val, note="reasons are not explainable").after
        == "rejected"
    )
    with pytest.raises(GovernanceError, match="'rejected'"):
        governance.approve("loans", 1, by=people.val, note="changed my mind")
    assert _actions(governance) == ["register", "reject", "refused"]


def test_promotion_retires_the_old_champion_and_rollback_restores_it(
    people: People, saved_model: Path
) -> None:
    governance = _registered(people, saved_model, versions=2)
    crown(people, "loans", 1)
    crown(people, "loans", 2)
    assert governance.champion("loans").version == 2
    assert governance.state(governance.registry.version("loans", 1)) == "retired"

    governance.rollback("loans", by=people.dep, reason="v2 misbehaves")

    assert governance.champion("loans").version == 1
    assert governance.state(governance.registry.version("loans", 2)) == "retired"
    assert governance.registry.alias("loans", "champion").version == 1  # the mirror follows
    assert [(r.action, r.object) for r in governance.history("loans")] == [
        ("register", "loans/v1"),
        ("register", "loans/v2"),
        ("approve", "loans/v1"),
        ("promote", "loans/v1"),
        ("approve", "loans/v2"),
        ("promote", "loans/v2"),
        ("rollback", "loans/v1"),
    ]
    assert governance.audit.verify() == [] and governance.mismatches() == []


def test_edited_mlflow_tags_do_not_make_an_unapproved_version_promotable(
    people: People, saved_model: Path, store: Store
) -> None:
    """The insider's first bypass: two tags edited in mlflow.db.

    They used to let the author promote her version.
    """
    governance = _registered(people, saved_model)
    governance.registry.set_version_tag("loans", 1, "state", "approved")
    governance.registry.set_version_tag("loans", 1, "approved_by", "vera")
    with pytest.raises(
        GovernanceError, match="'validated'; only an approved version can be promoted"
    ):
        governance.promote("loans", 1, by=people.dep)
    assert governance.state(governance.registry.version("loans", 1)) == "validated"
    assert any(
        "keel.state is 'approved', the audit log says 'validated'" in m
        for m in governance.mismatches()
    )


def test_an_mlflow_alias_moved_by_hand_does_not_change_the_champion(
    people: People, saved_model: Path
) -> None:
    """The second bypass: one set_registered_model_alias call.

    It pointed 'champion' at a gate-failing candidate.
    """
    governance = _registered(people, saved_model)
    register_version(governance, saved_model, author=people.dev, thresholds={"min_auc": 0.99})
    crown(people, "loans", 1)
    governance.registry.set_alias("loans", "champion", 2)
    assert governance.champion("loans").version == 1
    assert governance.mismatches() == [
        "loans: MLflow alias 'champion' points at v2, the audit log says v1"
    ]


def test_a_version_registered_in_mlflow_behind_the_logs_back_is_named(
    people: People, saved_model: Path
) -> None:
    governance = _registered(people, saved_model)
    run_id = governance.registry.start_run("loans", "sneaky", {})
    governance.registry.log_dir(run_id, saved_model, "model")
    governance.registry.register("loans", run_id, tags={"state": "champion"})
    assert (
        "loans/v2 is in the MLflow registry but the audit log never registered it"
        in governance.mismatches()
    )
    with pytest.raises(GovernanceError, match="never registered in the audit log"):
        governance.approve("loans", 2, by=people.val, note="ok")


def test_a_tampered_artifact_is_refused_while_the_champion_still_loads(
    people: People, saved_model: Path, store: Store
) -> None:
    governance = _registered(people, saved_model, versions=2)
    crown(people, "loans", 1)
    source = Path(governance.registry.version("loans", 2).source.removeprefix("file://"))
    assert source.is_relative_to(store.project_dir)
    manifest = source / "model.json"
    manifest.write_text(manifest.read_text().replace('"threshold": 0.5', '"threshold": 0.1'))

    with pytest.raises(IntegrityError, match="does not match the registered"):
        governance.registry.load_model("loans", 2)
    model, info = governance.registry.load_model("loans", governance.champion("loans").version)
    assert info.version == 1 and model.threshold == 0.5


def test_governance_of_a_folder_without_a_store_is_an_error_not_an_empty_history(
    tmp_path: Path,
) -> None:
    with pytest.raises(GovernanceError, match="no governance store at sqlite:///"):
        Governance.for_project(tmp_path / "one-folder-off")
    assert not (tmp_path / "one-folder-off" / "governance.db").exists()
    sqlite3.connect(
        tmp_path / "empty.db"
    ).close()  # a file without the audit tables is no store either
    with pytest.raises(GovernanceError, match="no governance store"):
        Governance.for_project(tmp_path, governance_uri=f"sqlite:///{tmp_path / 'empty.db'}")


def test_automatic_promotion_needs_the_validators_policy_not_the_developers_spec(
    people: People, saved_model: Path
) -> None:
    governance = _registered(people, saved_model, versions=2)
    crown(people, "loans", 1)
    with pytest.raises(GovernanceError, match="does not allow automatic promotion of 'loans'"):
        governance.auto_promote("loans", 2, note="retraining policy")
    governance.set_policy(by=people.val, reason="committee sign-off", auto_promote=["loans"])
    promoted = governance.auto_promote("loans", 2, note="retraining policy")
    assert promoted.after == "champion" and governance.champion("loans").version == 2
    assert [r.actor for r in governance.history("loans")[-2:]] == ["policy:v1", "policy:v1"]


def test_a_policy_fairness_floor_blocks_a_version_whose_spec_dropped_its_protected_attributes(
    people: People, saved_model: Path
) -> None:
    governance = people.service.governance
    governance.set_policy(
        by=people.val, reason="fair lending", thresholds={"min_adverse_impact_ratio": 0.8}
    )
    info = register_version(
        governance, saved_model, author=people.dev
    )  # measures hold no fairness rows
    assert governance.state(info) == "candidate"
    [row] = [r for r in governance.history("loans") if r.action == "register"]
    assert "min_adverse_impact_ratio[no protected attribute]" in row.after


def test_a_version_is_registered_once(people: People, saved_model: Path) -> None:
    governance = _registered(people, saved_model)
    info = governance.registry.version("loans", 1)
    with pytest.raises(GovernanceError, match="registered in the audit log already"):
        governance.record_registration(
            info,
            author=people.dev,
            claimed="ana",
            thresholds={},
            measures={},
            model_sha256=info.tag("model_sha256") or "",
        )


def test_a_retired_version_is_promoted_again_only_under_the_policy_in_force(
    people: People, saved_model: Path
) -> None:
    governance = _registered(people, saved_model, versions=2)
    crown(people, "loans", 1)
    crown(people, "loans", 2)
    governance.set_policy(by=people.val, reason="stricter", thresholds={"min_auc": 0.9})
    with pytest.raises(GovernanceError, match="fails policy v1's gates: min_auc"):
        governance.promote("loans", 1, by=people.dep)


def test_policy_values_are_typed(people: People) -> None:
    governance = people.service.governance
    with pytest.raises(GovernanceError, match="must be a finite number"):
        governance.set_policy(by=people.val, reason="x", thresholds={"min_auc": "0.9"})  # type: ignore[dict-item]
    with pytest.raises(GovernanceError, match="must be true or false"):
        governance.set_policy(by=people.val, reason="x", deployer_may_approve="false")  # type: ignore[arg-type]
    assert governance.policy().version == 0


def test_no_change_is_built_on_a_forged_row(people: People, saved_model: Path) -> None:
    """An insider inserts an 'approve' row by SQL.

    The aim: a real deployer would promote an unreviewed version.
    """
    import sqlalchemy as sa

    from keel.registry.audit import audit_table, head_table

    governance = _registered(people, saved_model)
    with governance.audit.engine.begin() as conn:
        seq = conn.execute(sa.select(sa.func.max(audit_table.c.seq))).scalar_one() + 1
        conn.execute(
            audit_table.insert().values(
                seq=seq,
                time="2026-01-01T00:00:00+00:00",
                actor=people.val.actor,
                action="approve",
                object="loans/v1",
                before="{}",
                after=f'{{"state": "approved", "approver_id": "{people.val.id}"}}',
                reason="",
                prev_hash="0" * 64,
                hash="0" * 64,
                key_id="",
                signature="",
            )
        )
        conn.execute(head_table.update().values(count=seq))
    assert (
        governance.state(governance.registry.version("loans", 1)) == "approved"
    )  # what the forged row claims
    with pytest.raises(GovernanceError, match="the audit log does not verify"):
        governance.promote("loans", 1, by=people.dep)
    assert governance.champion("loans") is None
