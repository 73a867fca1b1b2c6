"""Who acts: an authenticated user with a stable id and roles, and what each role may do.

A :class:`Principal` is only ever made by an authenticator (a password or an API token
checked against the user store, or a future OpenID Connect provider); nothing in Keel takes
a typed name as an identity. Users are compared by ``id``, never by their display name.
"""

from __future__ import annotations

from dataclasses import dataclass

from keel.errors import KeelError

ROLES = ("admin", "developer", "validator", "deployer", "viewer")

# permission -> the roles that hold it; every route and lifecycle call names one permission
PERMISSIONS: dict[str, frozenset[str]] = {
    "read": frozenset(ROLES),
    "register": frozenset({"developer"}),
    "approve": frozenset({"validator"}),
    "reject": frozenset({"validator"}),
    "promote": frozenset({"deployer"}),
    "rollback": frozenset({"deployer"}),
    "challenger": frozenset({"developer", "deployer"}),
    "policy": frozenset({"validator"}),
    "users": frozenset({"admin"}),
    "keys": frozenset({"admin"}),
}


_DOING = {
    "read": "read",
    "register": "register a version",
    "approve": "approve",
    "reject": "reject",
    "promote": "promote",
    "rollback": "roll back",
    "challenger": "set the challenger",
    "policy": "change the policy",
    "users": "manage users",
    "keys": "rotate the audit key",
}


class AuthenticationError(KeelError, PermissionError):
    """No valid credentials: a missing, wrong, expired or revoked password or token (HTTP 401)."""

    exit_code = 14


class PermissionDenied(KeelError, PermissionError):
    """Authenticated, but no role of the user holds the permission (HTTP 403)."""

    exit_code = 8


@dataclass(frozen=True)
class Principal:
    """An authenticated user: stable ``id`` (what the audit log records), display name and roles."""

    id: str
    name: str
    roles: frozenset[str]

    @property
    def actor(self) -> str:
        """How the audit log names this user: ``user:<id>``.

        The display name goes in the row's detail.
        """
        return f"user:{self.id}"

    def may(self, permission: str) -> bool:
        """True when one of the user's roles holds ``permission``."""
        return bool(self.roles & PERMISSIONS[permission])

    def require(self, permission: str) -> None:
        """Raise :class:`PermissionDenied` unless one of the user's roles holds ``permission``."""
        if not self.may(permission):
            needed = " or ".join(sorted(PERMISSIONS[permission]))
            held = ", ".join(sorted(self.roles)) or "none"
            raise PermissionDenied(
                f"{self.name} may not {_DOING[permission]}: it needs the role {needed}; "
                f"their roles: {held}"
            )
