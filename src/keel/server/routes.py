"""Every operation of the governance service: its HTTP method and path, and the permission it needs.

One table serves the HTTP app, the CLI's clients and the route-coverage test, so an operation
cannot exist without a stated permission. ``public`` routes need no credentials; ``password``
routes take a user name and password in the body; any other value is a permission of
:mod:`keel.registry.principal`.
"""

from __future__ import annotations

from dataclasses import dataclass

API = "/api/v1"


@dataclass(frozen=True)
class Route:
    """One operation: HTTP method and path, the service method, and who may call it."""

    method: str
    path: str
    call: str
    permission: str  # a keel.registry.principal permission, "public" or "password"


ROUTES = (
    Route("GET", "/livez", "", "public"),
    Route("POST", f"{API}/tokens", "create_token", "password"),
    Route("GET", f"{API}/me", "me", "read"),
    Route("GET", f"{API}/users", "list_users", "users"),
    Route("POST", f"{API}/users", "add_user", "users"),
    Route("POST", f"{API}/users/{{name}}/disable", "disable_user", "users"),
    Route("DELETE", f"{API}/tokens/{{token_id}}", "revoke_token", "read"),
    Route("GET", f"{API}/models", "models", "read"),
    Route("POST", f"{API}/models/{{name}}/versions/{{version}}/register", "register", "register"),
    Route("POST", f"{API}/models/{{name}}/versions/{{version}}/approve", "approve", "approve"),
    Route("POST", f"{API}/models/{{name}}/versions/{{version}}/reject", "reject", "reject"),
    Route("POST", f"{API}/models/{{name}}/versions/{{version}}/promote", "promote", "promote"),
    Route("POST", f"{API}/models/{{name}}/rollback", "rollback", "rollback"),
    Route("GET", f"{API}/policy", "policy", "read"),
    Route("PUT", f"{API}/policy", "set_policy", "policy"),
    Route("GET", f"{API}/audit", "audit", "read"),
    Route("GET", f"{API}/audit/verify", "verify", "read"),
)


def route_of(operation: str) -> Route:
    """The route of a service operation (its method name)."""
    return next(r for r in ROUTES if r.call == operation)
