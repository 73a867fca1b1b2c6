"""The governance service: the one writer of lifecycle state, behind authenticated operations.

:class:`GovernanceService` owns a project's registry, its signed audit log and its users.
Every operation takes an authenticated :class:`Principal` (made from an API token or a
password by :meth:`principal`), checks the permission, and returns plain JSON. The HTTP
API (:mod:`keel.server.api`) and the CLI without ``KEEL_SERVER`` call these same methods,
so the laptop and the bank's server enforce one set of rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from argon2 import PasswordHasher
from pydantic import ConfigDict, validate_call

from keel.errors import IntegrityError, KeelError
from keel.registry.audit import MISSING, AuditRow, verify_store
from keel.registry.governance import (
    Governance,
    GovernanceError,
    Transition,
    audit_key,
    checkpoint_store,
    default_governance_uri,
    store_exists,
)
from keel.registry.principal import AuthenticationError, Principal
from keel.registry.project import ProjectStore
from keel.registry.states import fields_of
from keel.server.routes import route_of
from keel.server.users import UserStore

F = TypeVar("F", bound=Callable[..., Any])


def operation(method: F) -> F:
    """An operation callable over HTTP: its arguments are validated against its type hints.

    Wrong arguments are a 422.
    """
    return validate_call(config=ConfigDict(arbitrary_types_allowed=True))(method)


class GovernanceService:
    """Authenticated lifecycle, policy, audit and user operations on one governance store."""

    def __init__(
        self,
        governance: Governance,
        users: UserStore,
        *,
        governance_uri: str,
        project_dir: Path | None = None,
    ) -> None:
        self.governance = governance
        self.users = users
        self.governance_uri = governance_uri
        self.project_dir = (
            project_dir  # where model cards and monitoring results are (the console shows them)
        )

    @classmethod
    def open(
        cls,
        store: ProjectStore,
        *,
        create: bool = False,
        hasher: PasswordHasher | None = None,
        writer: bool = True,
    ) -> GovernanceService:
        """The service over a project's stores; without ``create`` a missing store is an error.

        A ``writer`` holds the audit key (the governance service, or the in-process CLI on a
        laptop); a reader (verification) holds none and changes nothing.
        """
        governance = store.governance(create=create, writer=writer)
        return cls(
            governance,
            UserStore(governance.audit.engine, governance.audit, hasher=hasher),
            governance_uri=store.governance_uri or default_governance_uri(store.folder),
            project_dir=store.folder,
        )

    # identity -----------------------------------------------------------------------------
    def principal(self, token: str | None) -> Principal:
        """The user an API token belongs to; no token, or a bad one, is an AuthenticationError.

        The API answers it with 401.
        """
        if not token:
            raise AuthenticationError(
                "this needs an API token: set KEEL_TOKEN (create one with "
                "`keel token create --user NAME`)"
            )
        return self.users.authenticate_token(token)

    def call(self, name: str, token: str | None, args: dict[str, Any]) -> Any:
        """Run operation ``name`` as ``token``'s owner: authenticate, check permission, validate.

        A refusal for want of a role is audited (``refused``) before it is raised. The very
        first user (an admin) is added without a token, once: while the audit log has never
        added a user.
        """
        route, method = route_of(name), getattr(self, name)
        if route.permission == "password":
            if not args.get("name") or not args.get("password"):
                raise AuthenticationError(
                    'sign in with your user name and password: {"name": ..., "password": ...}'
                )
            return method(**args)
        if name == "add_user" and self.users.needs_bootstrap():
            return method(None, **args)
        principal = self.principal(token)
        if not principal.may(route.permission):
            target = (
                f"{args['name']}/v{args.get('version', '?')}" if "version" in args else "service"
            )
            self.governance.audit.append(
                actor=principal.actor,
                action="refused",
                obj=target,
                after={"attempt": name, "by": principal.name},
                reason=f"{principal.name} lacks the permission '{route.permission}'",
            )
            principal.require(route.permission)
        return method(principal, **args)

    @operation
    def me(self, by: Principal) -> dict[str, Any]:
        """Who the token belongs to, with roles and tokens."""
        by.require("read")
        return {
            "id": by.id,
            "name": by.name,
            "roles": sorted(by.roles),
            "tokens": self.users.tokens(by),
        }

    @operation
    def create_token(
        self, name: str, password: str, *, label: str = "cli", days: int = 90
    ) -> dict[str, Any]:
        """Sign in with a password and create an API token for that user, shown only here."""
        principal = self.users.authenticate_password(name, password)
        return {
            "token": self.users.create_token(principal, label=label, days=days),
            "user": principal.name,
            "days": days,
        }

    @operation
    def add_user(
        self,
        by: Principal | None,
        name: str,
        roles: list[str],
        password: str,
        display: str | None = None,
    ) -> dict[str, Any]:
        """An admin adds a user (``by`` None only for the very first user, who must be an admin)."""
        added = self.users.add(name, roles, password, by=by, display=display)
        return {"id": added.id, "name": added.name, "roles": sorted(added.roles)}

    @operation
    def list_users(self, by: Principal) -> list[dict[str, Any]]:
        """Every user with roles and state (no secrets)."""
        by.require("users")
        return self.users.list()

    @operation
    def disable_user(self, by: Principal, name: str) -> dict[str, Any]:
        """An admin disables a user: their tokens stop working at once."""
        self.users.disable(name, by=by)
        return {"disabled": name}

    @operation
    def revoke_token(self, by: Principal, token_id: str) -> dict[str, Any]:
        """The token's owner or an admin revokes it."""
        self.users.revoke_token(token_id, by=by)
        return {"revoked": token_id}

    # lifecycle ----------------------------------------------------------------------------
    @operation
    def approve(
        self, by: Principal, name: str, version: int, note: str, conditions: str | None = None
    ) -> dict[str, Any]:
        """Approve (optionally with conditions) a validated version someone else wrote."""
        return _transition(
            self.governance.approve(name, version, by=by, note=note, conditions=conditions or None)
        )

    @operation
    def reject(self, by: Principal, name: str, version: int, note: str) -> dict[str, Any]:
        """Reject a version; it can never be approved afterwards."""
        return _transition(self.governance.reject(name, version, by=by, note=note))

    @operation
    def promote(self, by: Principal, name: str, version: int, note: str = "") -> dict[str, Any]:
        """Make an approved version the champion."""
        return _transition(self.governance.promote(name, version, by=by, note=note))

    @operation
    def rollback(self, by: Principal, name: str, note: str) -> dict[str, Any]:
        """Restore the previous champion."""
        return _transition(self.governance.rollback(name, by=by, reason=note))

    @operation
    def models(self, by: Principal) -> list[dict[str, Any]]:
        """Every model with its champion, challenger and versions' audited states."""
        by.require("read")
        ledger = self.governance.ledger()
        return [
            {
                "name": name,
                "champion": model.champion,
                "challenger": model.challenger,
                "versions": [
                    {
                        "version": v.version,
                        "state": v.state,
                        "author": v.author,
                        "author_verified": v.author_id is not None,
                        "conditions": v.conditions,
                    }
                    for v in model.versions.values()
                ],
            }
            for name, model in sorted(ledger.models.items())
        ]

    @operation
    def register(
        self,
        by: Principal,
        name: str,
        version: int,
        thresholds: dict[str, float],
        measures: dict[str, Any],
        model_sha256: str,
    ) -> dict[str, Any]:
        """Audit a version the developer logged to the registry.

        Its files must load with ``model_sha256``.
        """
        by.require("register")
        info = self.governance.registry.version(name, version)
        if info.tag("model_sha256") != model_sha256:
            raise IntegrityError(
                f"{name} v{version}: the registry's model_sha256 {info.tag('model_sha256')} is not "
                f"the {model_sha256} given"
            )
        self.governance.registry.load_model(
            name, version
        )  # every file checked against that fingerprint
        done = self.governance.record_registration(
            info,
            author=by,
            claimed=by.name,
            thresholds=thresholds,
            measures=measures,
            model_sha256=model_sha256,
        )
        return {**_transition(done), "author": by.name}

    # policy and audit ---------------------------------------------------------------------
    @operation
    def policy(self, by: Principal) -> dict[str, Any]:
        """The governance policy in force, with its version and who set it."""
        by.require("read")
        policy = self.governance.policy()
        return {"version": policy.version, "set_by": policy.set_by, **policy.to_dict()}

    @operation
    def set_policy(
        self,
        by: Principal,
        note: str,
        thresholds: dict[str, float] | None = None,
        deployer_may_approve: bool | None = None,
        auto_promote: list[str] | None = None,
    ) -> dict[str, Any]:
        """A validator sets a new policy version (audited); unspecified settings are kept."""
        self.governance.set_policy(
            by=by,
            reason=note,
            thresholds=thresholds,
            deployer_may_approve=deployer_may_approve,
            auto_promote=auto_promote,
        )
        return self.policy(by)

    @operation
    def audit(
        self,
        by: Principal,
        model: str | None = None,
        actor: str | None = None,
        action: str | None = None,
    ) -> list[dict[str, Any]]:
        """Audit rows, oldest first, filtered by model, actor (id or name) and action."""
        by.require("read")
        rows = self.governance.history(model) if model else self.governance.audit.rows()
        return [
            _row(r)
            for r in rows
            if (action is None or r.action == action)
            and (actor is None or actor in (r.actor, fields_of(r.after).get("by")))
        ]

    @operation
    def verify(self, by: Principal | None = None) -> dict[str, Any]:
        """Check the chain, its signatures and checkpoints, the registry mirror and the users.

        The registry mirror and the users are checked against the log.
        """
        if by is not None:
            by.require("read")
        audit = self.governance.audit
        return _verified(self.governance_uri, audit.key, audit.checkpoints, lambda: self)


def verify_project(store: ProjectStore) -> dict[str, Any]:
    """:meth:`GovernanceService.verify` for a project, writing nothing.

    No key, table or database is created.
    """
    return _verified(
        store.governance_uri or default_governance_uri(store.folder),
        audit_key(store.folder, create=False),
        checkpoint_store(store.folder, store.checkpoints),
        lambda: GovernanceService.open(store, writer=False),
    )


def _verified(
    url: str, key: Any, checkpoints: Any, opened: Callable[[], GovernanceService]
) -> dict[str, Any]:
    """The chain's problems, then the registry's and the users' disagreements.

    The disagreements are looked for only when their tables are there.
    """
    problems = [asdict(p) for p in verify_store(url, key=key, checkpoints=checkpoints)]
    rows = 0
    if store_exists(url) and not any(p["kind"] == MISSING for p in problems):
        try:
            service = opened()
            problems += [
                {"kind": "mirror", "seq": None, "detail": d}
                for d in service.governance.mismatches()
            ]
            problems += [
                {"kind": "users", "seq": None, "detail": d}
                for d in service.users.verify_against_audit()
            ]
            rows = len(service.governance.audit.rows())
        except (
            KeelError
        ) as error:  # a store too damaged to open: the chain's problems above say why
            problems.append({"kind": "unreadable", "seq": None, "detail": str(error)})
    return {"intact": not problems, "rows": rows, "problems": problems}


def _transition(result: Transition) -> dict[str, Any]:
    return {
        "model": result.version.name,
        "version": result.version.version,
        "before": result.before,
        "after": result.after,
        "audit_seq": result.audit.seq,
        "gates": result.gates,
    }


def _row(row: AuditRow) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "time": row.time,
        "actor": row.actor,
        "action": row.action,
        "object": row.object,
        "before": fields_of(row.before),
        "after": fields_of(row.after),
        "reason": row.reason,
    }


__all__ = ["GovernanceError", "GovernanceService", "verify_project"]
