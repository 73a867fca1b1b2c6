"""The model lifecycle: candidate -> validated -> approved -> champion -> retired, audited.

A version is *validated* when every gate recorded at registration passed, *approved* by a
validator who is not its author (four eyes), and becomes *champion* (an MLflow alias) only
when a deployer promotes an approved version. Rollback restores the previous champion.
Each transition holds the audit log's lock while it checks and changes state, so
concurrent callers see and write one consistent history, and each writes one audit row.
On PostgreSQL the audit tables may share the registry's database; on SQLite they need a
file of their own, since a transition holds that file's write lock while MLflow writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from keel.errors import KeelError
from keel.registry.audit import AuditLog, AuditRow, make_engine
from keel.registry.store import Registry, VersionInfo

State = Literal["candidate", "validated", "approved", "champion", "retired"]
ROLES = ("developer", "validator", "deployer")
CHAMPION = "champion"
# The role each audited action requires; any other role is refused.
ROLE_OF_ACTION = {"register": "developer", "approve": "validator", "promote": "deployer", "rollback": "deployer"}


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


def default_governance_uri(project_dir: Path) -> str:
    """The governance database beside the default registry store."""
    return f"sqlite:///{(project_dir / 'governance.db').resolve()}"


def initial_state(gates: list[dict]) -> State:
    """'validated' when every configured gate was evaluated and passed, else 'candidate'."""
    return "validated" if all(g.get("passed") is True for g in gates) else "candidate"


class Governance:
    """Lifecycle transitions over one registry, written to one audit log."""

    def __init__(self, registry: Registry, audit: AuditLog) -> None:
        self.registry = registry
        self.audit = audit

    @classmethod
    def for_project(cls, project_dir: Path, tracking_uri: str | None = None, governance_uri: str | None = None
                    ) -> Governance:
        """Governance for a project directory (defaults: .keel/mlflow.db and .keel/governance.db)."""
        registry = Registry.for_project(project_dir, tracking_uri)
        return cls(registry, AuditLog(make_engine(governance_uri or default_governance_uri(project_dir))))

    def state(self, info: VersionInfo) -> str:
        """The lifecycle state recorded on a version."""
        return info.tag("state", "candidate") or "candidate"

    def champion(self, name: str) -> VersionInfo | None:
        """The version the champion alias points at, if any."""
        return self.registry.alias(name, CHAMPION)

    def record_registration(self, info: VersionInfo, *, actor: str, gates: list[dict]) -> Transition:
        """Audit a new version and set its first state from its gates."""
        state = initial_state(gates)
        with self.audit.engine.begin() as conn:
            self.registry.set_version_tag(info.name, info.version, "state", state)
            row = self.audit.append(actor=actor, action="register", obj=_obj(info), before=None,
                                    after={"state": state, "gates": gates}, reason="registered by keel run",
                                    connection=conn)
        return Transition(info, "none", state, row)

    def approve(self, name: str, version: int | str, *, by: str, role: str, note: str) -> Transition:
        """A validator other than the author approves a version whose gates all passed."""
        _require_role(role, ROLE_OF_ACTION["approve"], "approve")
        if not note.strip():
            raise GovernanceError("an approval needs a note saying what was reviewed (--note)")
        with self.audit.engine.begin() as conn:
            self.audit.lock(conn)
            info = self.registry.version(name, version)
            state = self.state(info)
            author = info.tag("author")
            if by == author:
                raise GovernanceError(f"four-eyes rule: {by} is the author of {_obj(info)} and cannot approve it; "
                                      "another validator must")
            if state != "validated":
                failing = [g["name"] for g in json.loads(info.tag("gates") or "[]") if g.get("passed") is not True]
                raise GovernanceError(
                    f"{_obj(info)} is '{state}', not 'validated'; only a version whose gates all passed can be "
                    f"approved" + (f" (failed or not evaluated: {', '.join(failing)})" if failing else "")
                )
            self.registry.set_version_tag(name, info.version, "state", "approved")
            self.registry.set_version_tag(name, info.version, "approved_by", by)
            row = self.audit.append(actor=by, action="approve", obj=_obj(info), before={"state": state},
                                    after={"state": "approved"}, reason=note, connection=conn)
        return Transition(info, state, "approved", row)

    def promote(self, name: str, version: int | str, *, by: str, role: str, note: str = "") -> Transition:
        """A deployer makes an approved version the champion; the old champion is retired."""
        _require_role(role, ROLE_OF_ACTION["promote"], "promote")
        with self.audit.engine.begin() as conn:
            self.audit.lock(conn)
            info = self.registry.version(name, version)
            state = self.state(info)
            if state not in ("approved", "retired") or not info.tag("approved_by"):
                raise GovernanceError(f"{_obj(info)} is '{state}'; only an approved version can be promoted "
                                      "(keel approve first)")
            current = self.champion(name)
            if current is not None and current.version == info.version:
                raise GovernanceError(f"{_obj(info)} is already the champion")
            self.registry.set_alias(name, CHAMPION, info.version)
            self.registry.set_version_tag(name, info.version, "state", "champion")
            self.registry.set_version_tag(name, info.version, "previous_champion",
                                          str(current.version) if current else "")
            if current is not None:
                self.registry.set_version_tag(name, current.version, "state", "retired")
            row = self.audit.append(actor=by, action="promote", obj=_obj(info),
                                    before={"champion": current.version if current else None, "state": state},
                                    after={"champion": info.version, "state": "champion"}, reason=note,
                                    connection=conn)
        return Transition(info, state, "champion", row)

    def rollback(self, name: str, *, by: str, role: str, reason: str) -> Transition:
        """Restore the champion before the current one; the current one is retired."""
        _require_role(role, ROLE_OF_ACTION["rollback"], "roll back")
        with self.audit.engine.begin() as conn:
            self.audit.lock(conn)
            current = self.champion(name)
            if current is None:
                raise GovernanceError(f"model '{name}' has no champion to roll back")
            previous = current.tag("previous_champion")
            if not previous:
                raise GovernanceError(f"{_obj(current)} has no previous champion to roll back to")
            target = self.registry.version(name, int(previous))
            self.registry.set_alias(name, CHAMPION, target.version)
            self.registry.set_version_tag(name, target.version, "state", "champion")
            self.registry.set_version_tag(name, current.version, "state", "retired")
            row = self.audit.append(actor=by, action="rollback", obj=_obj(target),
                                    before={"champion": current.version}, after={"champion": target.version},
                                    reason=reason, connection=conn)
        return Transition(target, "retired", "champion", row)

    def history(self, name: str) -> list[AuditRow]:
        """Every audited transition of the model's versions, oldest first."""
        return [row for row in self.audit.rows() if row.object.startswith(f"{name}/v")]


def _obj(info: VersionInfo) -> str:
    return f"{info.name}/v{info.version}"


def _require_role(role: str, needed: str, action: str) -> None:
    if role not in ROLES:
        raise GovernanceError(f"role '{role}' is not one of {', '.join(ROLES)}")
    if role != needed:
        raise GovernanceError(f"only a {needed} may {action}; the role given is '{role}'")
