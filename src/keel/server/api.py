"""`keel server`'s versioned JSON API over :class:`~keel.server.service.GovernanceService`.

Every route is one row of :data:`ROUTES`: method, path, the service method it calls and the
permission it needs (``public`` routes need none; ``password`` routes take a user name and
password in the body). The app and the CLI's HTTP client are both built from this table,
and the route-coverage test walks it, so a route cannot ship without a stated permission.
Credentials: ``Authorization: Bearer <token>``. Errors: 401 no or bad credentials, 403
permission or lifecycle rule refused, 404 unknown model or version, 422 bad input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from keel.errors import KeelError, RegistryError
from keel.registry.principal import AuthenticationError, PermissionDenied
from keel.server.service import GovernanceError, GovernanceService

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
    Route("POST", f"{API}/models/{{name}}/versions/{{version}}/approve", "approve", "approve"),
    Route("POST", f"{API}/models/{{name}}/versions/{{version}}/reject", "reject", "reject"),
    Route("POST", f"{API}/models/{{name}}/versions/{{version}}/promote", "promote", "promote"),
    Route("POST", f"{API}/models/{{name}}/rollback", "rollback", "rollback"),
    Route("GET", f"{API}/policy", "policy", "read"),
    Route("PUT", f"{API}/policy", "set_policy", "policy"),
    Route("GET", f"{API}/audit", "audit", "read"),
    Route("GET", f"{API}/audit/verify", "verify", "read"),
)
STATUS = ((AuthenticationError, 401), (PermissionDenied, 403), (GovernanceError, 403), (RegistryError, 404),
          (KeelError, 422), (ValueError, 422), (TypeError, 422))


def bearer(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if any."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def create_governance_app(service: GovernanceService) -> FastAPI:
    """The FastAPI app: one route per row of :data:`ROUTES`, each authenticated before it runs."""
    app = FastAPI(title="Keel governance service", version="1", docs_url=None, redoc_url=None)
    app.state.service = service

    for route in ROUTES:
        app.add_api_route(route.path, _endpoint(service, route), methods=[route.method], name=route.call or "livez")

    @app.exception_handler(KeelError)
    async def refused(request: Request, error: KeelError) -> JSONResponse:
        return _error(error)

    return app


def _endpoint(service: GovernanceService, route: Route) -> Any:
    async def endpoint(request: Request) -> Any:
        if route.permission == "public":
            return {"status": "ok"}
        try:
            args: dict[str, Any] = dict(request.path_params)
            if "version" in args:
                args["version"] = int(args["version"])
            args.update({k: v for k, v in request.query_params.items()})
            if route.method in ("POST", "PUT"):
                body = await request.json() if await request.body() else {}
                if not isinstance(body, dict):
                    raise ValueError("the request body must be a JSON object")
                args.update(body)
            method = getattr(service, route.call)
            if route.permission == "password":
                if not args.get("name") or not args.get("password"):
                    raise AuthenticationError("sign in with your user name and password: "
                                              '{"name": ..., "password": ...}')
                return method(**args)
            token = bearer(request)
            if route.call == "add_user" and not service.users.list():
                return method(None, **args)  # the first user, an admin: nothing to authenticate against yet
            principal = service.principal(token)
            principal.require(route.permission)
            return method(principal, **args)
        except (KeelError, ValueError, TypeError) as error:
            return _error(error)
    return endpoint


def _error(error: Exception) -> JSONResponse:
    status = next(code for kind, code in STATUS if isinstance(error, kind))
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": type(error).__name__, "detail": str(error)}, status_code=status, headers=headers)
