"""The model lifecycle, enforced: candidate -> validated -> approved -> champion -> retired.

A version may be rejected instead.

Every transition is made by an authenticated :class:`~keel.registry.principal.Principal`
holding the permission, checked against the governance policy in force, and written to the
signed audit log; the state of every version is *derived from that log*
(:mod:`keel.registry.states`). MLflow tags and the ``champion``/``challenger`` aliases are a
mirror the governance layer writes after each transition; :meth:`Governance.mismatches`
names every place where the mirror (or anything else in MLflow) disagrees with the log.

Separation of duties: a version's author can never approve or promote it; its approver may
not promote it unless the policy says ``deployer_may_approve``. A version registered without
an authenticated author cannot be approved. Refused attempts are audited too (``refused``).
Each transition holds the audit log's write lock while it reads the log, checks and writes,
so concurrent callers see and write one consistent history.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from keel.errors import IntegrityError, KeelError, RegistryError
from keel.evaluation.gates import judge, tighter
from keel.registry.audit import AuditLog, AuditRow, audit_table, open_database
from keel.registry.principal import PERMISSIONS, PermissionDenied, Principal
from keel.registry.signing import AuditKey, CheckpointStore
from keel.registry.states import (
    POLICY_OBJECT,
    Ledger,
    Policy,
    VersionState,
    fields_of,
    replay,
    split_object,
)
from keel.registry.store import Registry, VersionInfo

CHAMPION, CHALLENGER = "champion", "challenger"
KEY_ENV, CHECKPOINTS_ENV = "KEEL_AUDIT_KEY", "KEEL_AUDIT_CHECKPOINTS"
# The role each audited action requires (shown on the model card): each is held by one role.
ROLE_OF_ACTION = {
    action: min(PERMISSIONS[action])
    for action in ("register", "approve", "reject", "promote", "rollback", "policy")
}


class GovernanceError(KeelError, PermissionError):
    """A lifecycle transition the rules refuse."""

    exit_code = 8


@dataclass(frozen=True)
class Transition:
    """What one lifecycle call changed."""

    version: VersionInfo
    before: str
    after: str
    audit: AuditRow
    gates: list[dict[str, Any]]


def default_governance_uri(project_dir: Path) -> str:
    """The governance database beside the default registry store."""
    return f"sqlite:///{(project_dir / 'governance.db').resolve()}"


def audit_key(project_dir: Path, *, create: bool = True) -> AuditKey | None:
    """The Ed25519 key that signs audit heads: ``$KEEL_AUDIT_KEY``, else the project's key file.

    The project's key file is ``keys/audit.key``. Created when missing only with ``create``;
    otherwise a missing key file is None.
    """
    path = Path(os.environ.get(KEY_ENV) or project_dir / "keys" / "audit.key")
    return AuditKey.load_or_create(path) if create or path.is_file() else None


def checkpoint_store(project_dir: Path, location: str | None = None) -> CheckpointStore:
    """The second place signed heads go.

    The spec's location, else ``$KEEL_AUDIT_CHECKPOINTS``, else ``audit-checkpoints/`` in the
    project.
    """
    return CheckpointStore(
        location or os.environ.get(CHECKPOINTS_ENV) or str(project_dir / "audit-checkpoints")
    )


def store_exists(url: str) -> bool:
    """True when the governance database at ``url`` exists and holds the audit table.

    Creates nothing.
    """
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if not path or path == ":memory:" or not Path(path).is_file():
            return False
    engine = open_database(url)
    try:
        return sa.inspect(engine).has_table(audit_table.name)
    except sa.exc.DBAPIError:
        return False
    finally:
        engine.dispose()


class Governance:
    """Lifecycle transitions over one registry, written to one signed audit log."""

    def __init__(self, registry: Registry, audit: AuditLog) -> None:
        self.registry = registry
        self.audit = audit

    @classmethod
    def for_project(
        cls,
        project_dir: Path,
        tracking_uri: str | None = None,
        governance_uri: str | None = None,
        *,
        checkpoints: str | None = None,
        create: bool = False,
        writer: bool = True,
    ) -> Governance:
        """Governance for a project.

        Defaults: .keel/mlflow.db, .keel/governance.db, signed checkpoints.

        Without ``create`` a missing governance store is an error: a project directory one
        folder off must never look like an empty, intact history. A reader (``writer`` False,
        as ``keel serve``) needs no signing key.
        """
        url = governance_uri or default_governance_uri(project_dir)
        if not create and not store_exists(url):
            raise GovernanceError(
                f"no governance store at {url}: is --project-dir (or --spec) right? "
                "`keel run` creates one with the first version"
            )
        registry = Registry.for_project(project_dir, tracking_uri)
        log = AuditLog(
            open_database(url),
            key=audit_key(project_dir) if writer else None,
            checkpoints=checkpoint_store(project_dir, checkpoints),
        )
        return cls(registry, log)

    # what the log says ----------------------------------------------------------------
    def ledger(self, conn: sa.Connection | None = None) -> Ledger:
        """Every model's state and the policy, replayed from the audit log.

        Read within ``conn`` when given.
        """
        query = sa.select(audit_table).order_by(audit_table.c.seq)
        if conn is not None:
            return replay(AuditRow(**row._mapping) for row in conn.execute(query))
        return replay(self.audit.rows())

    def policy(self) -> Policy:
        """The governance policy in force."""
        return self.ledger().policy

    def state(self, info: VersionInfo) -> str:
        """The lifecycle state the audit log gives a version ('unregistered' if it never saw it)."""
        found = self.ledger().model(info.name).versions.get(info.version)
        return found.state if found else "unregistered"

    def champion(self, name: str) -> VersionInfo | None:
        """The version the audit log made champion, if any."""
        version = self.ledger().model(name).champion
        return None if version is None else self.registry.version(name, version)

    def challenger(self, name: str) -> VersionInfo | None:
        """The version the audit log made challenger (scored in the shadow), if any."""
        version = self.ledger().model(name).challenger
        return None if version is None else self.registry.version(name, version)

    def history(self, name: str) -> list[AuditRow]:
        """Every audited row about the model's versions, oldest first."""
        return [row for row in self.audit.rows() if (split_object(row.object) or ("",))[0] == name]

    # transitions ------------------------------------------------------------------------
    def record_registration(
        self,
        info: VersionInfo,
        *,
        author: Principal | None,
        claimed: str,
        thresholds: dict[str, float],
        measures: dict[str, Any],
        model_sha256: str,
    ) -> Transition:
        """Audit a new version, its gates judged on ``measures``.

        The gates are the spec's ``thresholds`` tightened by the policy.

        ``author`` is the authenticated developer, or None: such a version is recorded under
        the ``claimed`` name, marked unverified, and can never be approved.
        """
        if author is not None:
            author.require("register")
        self._require_intact()
        with self.audit.engine.begin() as conn:
            self.audit.lock(conn)
            ledger = self.ledger(conn)
            if info.version in ledger.model(info.name).versions:
                raise GovernanceError(
                    f"{_obj(info)} is registered in the audit log already; a version is "
                    "registered once"
                )
            policy = ledger.policy
            gates = judge(tighter(policy.thresholds, thresholds), measures)
            state = "validated" if all(g["passed"] is True for g in gates) else "candidate"
            who = (
                {"id": author.id, "name": author.name} if author else {"id": None, "name": claimed}
            )
            row = self.audit.append(
                actor=author.actor if author else f"unverified:{claimed}",
                action="register",
                obj=_obj(info),
                before=None,
                after={
                    "state": state,
                    "author": who,
                    "gates": gates,
                    "thresholds": thresholds,
                    "measures": measures,
                    "model_sha256": model_sha256,
                    "policy": policy.version,
                },
                reason="registered by keel run",
                connection=conn,
            )
            self._mirror(conn, info.name)
        self._checkpoint()
        return Transition(info, "none", state, row, gates)

    def approve(
        self,
        name: str,
        version: int | str,
        *,
        by: Principal,
        note: str,
        conditions: str | None = None,
    ) -> Transition:
        """A validator other than the author approves a version.

        Its gates must pass under the current policy.
        """

        def check(ledger: Ledger, current: VersionState) -> dict[str, Any]:
            by.require("approve")
            if not note.strip():
                raise GovernanceError("an approval needs a note saying what was reviewed (--note)")
            if current.author_id is None:
                raise GovernanceError(
                    f"{name}/v{current.version} was registered without an authenticated author "
                    f"('{current.author}' was typed, not signed in), so four eyes cannot be "
                    "proven: register it again with a developer's token (KEEL_TOKEN)"
                )
            if current.author_id == by.id:
                raise GovernanceError(
                    f"four-eyes rule: {by.name} is the author of {name}/v{current.version} and "
                    "cannot approve it; another validator must"
                )
            if current.state != "validated":
                raise GovernanceError(
                    f"{name}/v{current.version} is '{current.state}'; only a validated version "
                    "can be approved"
                )
            gates = judge(tighter(ledger.policy.thresholds, current.thresholds), current.measures)
            failing = [g["name"] for g in gates if g["passed"] is not True]
            if failing:
                raise GovernanceError(
                    f"{name}/v{current.version} fails policy v{ledger.policy.version}'s gates: "
                    f"{', '.join(failing)} (failed or not evaluated)"
                )
            return {
                "state": "approved",
                "approver_id": by.id,
                "approver": by.name,
                "conditions": conditions,
                "gates": gates,
            }

        return self._change(name, version, "approve", by, note, check)

    def reject(self, name: str, version: int | str, *, by: Principal, note: str) -> Transition:
        """A validator rejects a version that is not (and was never) champion.

        It can then never be approved.
        """

        def check(ledger: Ledger, current: VersionState) -> dict[str, Any]:
            by.require("reject")
            if not note.strip():
                raise GovernanceError("a rejection needs a note saying why (--note)")
            if current.state not in ("candidate", "validated", "approved"):
                raise GovernanceError(
                    f"{name}/v{current.version} is '{current.state}'; only a candidate, validated "
                    "or approved version can be rejected (roll back a champion instead)"
                )
            return {"state": "rejected"}

        return self._change(name, version, "reject", by, note, check)

    def promote(
        self, name: str, version: int | str, *, by: Principal, note: str = ""
    ) -> Transition:
        """A deployer makes an approved version champion.

        The deployer is neither its author nor, by default, its approver.
        """

        def check(ledger: Ledger, current: VersionState) -> dict[str, Any]:
            by.require("promote")
            if current.state not in ("approved", "retired") or current.approver_id is None:
                raise GovernanceError(
                    f"{name}/v{current.version} is '{current.state}'; only an approved version "
                    "can be promoted (keel approve first)"
                )
            if current.author_id == by.id:
                raise GovernanceError(
                    f"separation of duties: {by.name} is the author of {name}/v{current.version} "
                    "and cannot promote it"
                )
            if current.approver_id == by.id and not ledger.policy.deployer_may_approve:
                raise GovernanceError(
                    f"separation of duties: {by.name} approved {name}/v{current.version}; another "
                    "deployer must promote it (policy v"
                    f"{ledger.policy.version} does not let the approver deploy)"
                )
            champion = ledger.model(name).champion
            if champion == current.version:
                raise GovernanceError(f"{name}/v{current.version} is already the champion")
            gates = judge(tighter(ledger.policy.thresholds, current.thresholds), current.measures)
            failing = [g["name"] for g in gates if g["passed"] is not True]
            if failing:
                raise GovernanceError(
                    f"{name}/v{current.version} fails policy v{ledger.policy.version}'s gates: "
                    f"{', '.join(failing)}; a version is promoted only under the policy in force"
                )
            return {
                "state": "champion",
                "champion": current.version,
                "previous": champion,
                "gates": gates,
            }

        return self._change(name, version, "promote", by, note, check)

    def rollback(self, name: str, *, by: Principal, reason: str) -> Transition:
        """Restore the champion before the current one; the current one is retired."""
        model = self.ledger().model(name)
        if model.champion is None:
            self._refuse(
                by, "rollback", f"{name}/v?", f"model '{name}' has no champion to roll back"
            )
        if len(model.champions) < 2:
            self._refuse(
                by,
                "rollback",
                f"{name}/v{model.champion}",
                f"{name}/v{model.champion} has no previous champion to roll back to",
            )
        target = model.champions[-2]

        def check(ledger: Ledger, current: VersionState) -> dict[str, Any]:
            by.require("rollback")
            if not reason.strip():
                raise GovernanceError("a rollback needs a note saying why (--note)")
            if ledger.model(name).champions[-2:] != [target, model.champion]:
                raise GovernanceError(
                    f"the champion of '{name}' changed meanwhile; look again and retry"
                )
            return {"state": "champion", "champion": target, "retired": model.champion}

        return self._change(name, target, "rollback", by, reason, check)

    def set_challenger(
        self, name: str, version: int | None, *, by: Principal, reason: str
    ) -> AuditRow:
        """Make ``version`` the model's challenger (scored in the shadow only); None clears it."""
        try:
            by.require("challenger")
        except PermissionDenied as refused:
            self._refuse(by, "challenger", f"{name}/v{version}", str(refused), refused)
        self._require_intact()
        with self.audit.engine.begin() as conn:
            self.audit.lock(conn)
            number = version if version is not None else self.ledger(conn).model(name).challenger
            row = self.audit.append(
                actor=by.actor,
                action="challenger",
                obj=f"{name}/v{number}",
                before=None,
                after={"challenger": version, "by": by.name},
                reason=reason,
                connection=conn,
            )
            self._mirror(conn, name)
        self._checkpoint()
        return row

    def auto_promote(self, name: str, version: int, *, note: str) -> Transition:
        """The retraining policy approves and promotes a better challenger.

        Only when the validators' policy allows it.
        """

        def check(ledger: Ledger, current: VersionState) -> dict[str, Any]:
            policy = ledger.policy
            if name not in policy.auto_promote:
                raise GovernanceError(
                    f"governance policy v{policy.version} does not allow automatic promotion of "
                    f"'{name}'; a validator must add it (keel policy set --auto-promote {name})"
                )
            if current.author_id is None:
                raise GovernanceError(
                    f"{name}/v{version} was registered without an authenticated author; the "
                    "policy promotes only versions a signed-in developer registered"
                )
            if policy.set_by == f"user:{current.author_id}":
                raise GovernanceError(
                    f"four-eyes rule: the author of {name}/v{version} also set the policy"
                )
            if current.state != "validated":
                raise GovernanceError(f"{name}/v{version} is '{current.state}', not 'validated'")
            gates = judge(tighter(policy.thresholds, current.thresholds), current.measures)
            if any(g["passed"] is not True for g in gates):
                raise GovernanceError(f"{name}/v{version} fails policy v{policy.version}'s gates")
            return {
                "state": "champion",
                "approver_id": None,
                "approver": f"policy v{policy.version}",
                "champion": version,
                "previous": ledger.model(name).champion,
                "gates": gates,
            }

        self._require_intact()
        with self.audit.engine.begin() as conn:  # approve and promote as one step
            self.audit.lock(conn)
            ledger = self.ledger(conn)
            actor = f"policy:v{ledger.policy.version}"
            current = self._version(ledger, name, version)
            after = check(ledger, current)
            self.audit.append(
                actor=actor,
                action="approve",
                obj=f"{name}/v{version}",
                before={"state": current.state},
                after=after | {"state": "approved"},
                reason=note,
                connection=conn,
            )
            row = self.audit.append(
                actor=actor,
                action="promote",
                obj=f"{name}/v{version}",
                before={"state": "approved", "champion": after["previous"]},
                after=after,
                reason=note,
                connection=conn,
            )
            self._mirror(conn, name)
        self._checkpoint()
        return Transition(
            self.registry.version(name, version), current.state, "champion", row, after["gates"]
        )

    def set_policy(
        self,
        *,
        by: Principal,
        reason: str,
        thresholds: dict[str, float] | None = None,
        deployer_may_approve: bool | None = None,
        auto_promote: list[str] | None = None,
    ) -> Policy:
        """A validator changes the governance policy; each change is a new, audited version."""
        try:
            by.require("policy")
            _check_policy(thresholds, deployer_may_approve, auto_promote)
            if not reason.strip():
                raise GovernanceError("a policy change needs a note saying why (--note)")
        except (GovernanceError, PermissionDenied) as refused:
            self._refuse(by, "policy", POLICY_OBJECT, str(refused), refused)
        self._require_intact()
        with self.audit.engine.begin() as conn:
            self.audit.lock(conn)
            current = self.ledger(conn).policy
            new = Policy(
                current.version + 1,
                current.thresholds if thresholds is None else dict(thresholds),
                current.deployer_may_approve
                if deployer_may_approve is None
                else deployer_may_approve,
                current.auto_promote if auto_promote is None else tuple(auto_promote),
                by.actor,
            )
            self.audit.append(
                actor=by.actor,
                action="policy",
                obj=POLICY_OBJECT,
                before=current.to_dict(),
                after=new.to_dict() | {"version": new.version, "by": by.name},
                reason=reason,
                connection=conn,
            )
        self._checkpoint()
        return new

    # the mirror ---------------------------------------------------------------------------
    def mismatches(self) -> list[str]:
        """Every way the MLflow registry disagrees with the audit log, one sentence each."""
        ledger, found, registered = self.ledger(), [], set(self.registry.model_names())
        for name in sorted(registered | set(ledger.models)):
            model = ledger.model(name)
            known = (
                {v.version: v for v in self.registry.versions(name)} if name in registered else {}
            )
            for number, info in known.items():
                audited = model.versions.get(number)
                if audited is None:
                    found.append(
                        f"{name}/v{number} is in the MLflow registry but the audit log never "
                        "registered it"
                    )
                    continue
                if info.tag("state") != audited.state:
                    found.append(
                        f"{name}/v{number}: MLflow tag keel.state is '{info.tag('state')}', "
                        f"the audit log says '{audited.state}'"
                    )
            for number in sorted(set(model.versions) - set(known)):
                found.append(f"{name}/v{number} is in the audit log but not in the MLflow registry")
            for alias, audited_version in (
                (CHAMPION, model.champion),
                (CHALLENGER, model.challenger),
            ):
                mirrored = self.registry.alias(name, alias) if known else None
                if (mirrored.version if mirrored else None) != audited_version:
                    found.append(
                        f"{name}: MLflow alias '{alias}' points at "
                        f"{'v' + str(mirrored.version) if mirrored else 'nothing'}, "
                        "the audit log says "
                        f"{'v' + str(audited_version) if audited_version else 'none'}"
                    )
        return found

    def registered_sha256(self, name: str, version: int) -> str | None:
        """The model fingerprint the audit log recorded when the version was registered."""
        for row in self.audit.rows(obj=f"{name}/v{version}"):
            if row.action == "register":
                return fields_of(row.after).get("model_sha256")
        return None

    def _mirror(self, conn: sa.Connection, name: str) -> None:
        """Write the model's audited state into MLflow tags and aliases, under the log's lock.

        The lock means mirrors never race.
        """
        model = self.ledger(conn).model(name)
        for number, audited in model.versions.items():
            try:
                info = self.registry.version(name, number)
            except RegistryError:
                continue
            if info.tag("state") != audited.state:
                self.registry.set_version_tag(name, number, "state", audited.state)
            if audited.approver_id and info.tag("approved_by") != audited.approver_id:
                self.registry.set_version_tag(name, number, "approved_by", audited.approver_id)
        for alias, version in ((CHAMPION, model.champion), (CHALLENGER, model.challenger)):
            mirrored = self.registry.alias(name, alias)
            if version is not None and (mirrored is None or mirrored.version != version):
                self.registry.set_alias(name, alias, version)
            elif version is None and mirrored is not None:
                self.registry.delete_alias(name, alias)

    def _change(
        self,
        name: str,
        version: int | str,
        action: str,
        by: Principal,
        note: str,
        check: Callable[[Ledger, VersionState], dict[str, Any]],
    ) -> Transition:
        """Check and write one transition under the log's lock.

        A refusal is audited, then raised.
        """
        number = self.registry.version(name, version).version
        self._require_intact()
        try:
            with self.audit.engine.begin() as conn:
                self.audit.lock(conn)
                ledger = self.ledger(conn)
                current = self._version(ledger, name, number)
                after = check(ledger, current)
                before: dict[str, str | int | None] = {"state": current.state}
                if "champion" in after:
                    before["champion"] = ledger.model(name).champion
                row = self.audit.append(
                    actor=by.actor,
                    action=action,
                    obj=f"{name}/v{number}",
                    before=before,
                    after=after | {"by": by.name, "policy": ledger.policy.version},
                    reason=note,
                    connection=conn,
                )
                self._mirror(conn, name)
        except (GovernanceError, PermissionDenied) as refused:
            self._refuse(by, action, f"{name}/v{number}", str(refused), refused)
        self._checkpoint()
        return Transition(
            self.registry.version(name, number),
            current.state,
            after["state"],
            row,
            after.get("gates", []),
        )

    def _checkpoint(self) -> None:
        """Write the signed checkpoint of the committed head.

        A failure says the change itself is saved.
        """
        try:
            self.audit.checkpoint()
        except OSError as error:
            raise IntegrityError(
                f"the change is saved in the audit log, but its checkpoint could not be written to "
                f"{self.audit.checkpoints}: {error}; fix the location, then keel audit verify"
            ) from error

    def _require_intact(self) -> None:
        """Refuse any change while the audit log does not verify.

        State must never be built on a forged row.
        """
        problems = self.audit.verify()
        if problems:
            raise GovernanceError(
                f"the audit log does not verify ({problems[0].kind}: {problems[0].detail}); no "
                "lifecycle change until it does (keel audit verify names every problem)"
            )

    def _version(self, ledger: Ledger, name: str, number: int) -> VersionState:
        found = ledger.model(name).versions.get(number)
        if found is None:
            raise GovernanceError(
                f"{name}/v{number} was never registered in the audit log; it has no lifecycle"
            )
        return found

    def _refuse(
        self, by: Principal, action: str, obj: str, why: str, error: Exception | None = None
    ) -> Any:
        """Audit a refused attempt, then raise it."""
        self.audit.append(
            actor=by.actor,
            action="refused",
            obj=obj,
            before=None,
            after={"attempt": action, "by": by.name},
            reason=why,
        )
        raise error or GovernanceError(why)


def _check_policy(
    thresholds: dict[str, float] | None,
    deployer_may_approve: bool | None,
    auto_promote: list[str] | None,
) -> None:
    """Refuse unknown gates, non-finite thresholds, a non-boolean switch, non-text model names."""
    from keel.evaluation.gates import FAIRNESS_GATES, MODEL_GATES

    known = [*MODEL_GATES, *FAIRNESS_GATES]
    for gate, threshold in (thresholds or {}).items():
        if gate not in known:
            raise GovernanceError(f"unknown gate '{gate}'; gates are {', '.join(known)}")
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, (int, float))
            or not math.isfinite(threshold)
        ):
            raise GovernanceError(
                f"gate {gate}: the threshold must be a finite number, not {threshold!r}"
            )
    if deployer_may_approve is not None and not isinstance(deployer_may_approve, bool):
        raise GovernanceError(
            f"deployer_may_approve must be true or false, not {deployer_may_approve!r}"
        )
    if auto_promote is not None and not all(isinstance(n, str) and n for n in auto_promote):
        raise GovernanceError(f"auto_promote must list model names, not {auto_promote!r}")


def _obj(info: VersionInfo) -> str:
    return f"{info.name}/v{info.version}"
