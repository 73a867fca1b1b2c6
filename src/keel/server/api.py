"""`keel server`'s versioned JSON API: one route per row of :data:`keel.server.routes.ROUTES`.

Each route hands its path parameters, query (GET) or JSON body (POST, PUT) and bearer token to
:meth:`GovernanceService.call`, which authenticates, checks the permission and validates the
arguments. Credentials: ``Authorization: Bearer <token>``. Errors: 401 no or bad credentials,
403 permission or lifecycle rule refused, 404 unknown model or version, 422 bad input.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from keel.errors import IntegrityError, KeelError, RegistryError
from keel.registry.principal import AuthenticationError, PermissionDenied
from keel.server.routes import ROUTES, Route
from keel.server.service import GovernanceError, GovernanceService
from keel.web.bodies import BoundedBodies

MAX_BODY_BYTES, BODY_TIMEOUT = 1_000_000, 10.0  # a request body: at most 1 MB, received whole within 10 s

STATUS = ((AuthenticationError, 401), (PermissionDenied, 403), (GovernanceError, 403), (RegistryError, 404),
          (IntegrityError, 503), (KeelError, 422), (ValueError, 422))


def bearer(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if any."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def create_governance_app(service: GovernanceService) -> FastAPI:
    """The FastAPI app over one service; every route goes through :meth:`GovernanceService.call`."""
    app = FastAPI(title="Keel governance service", version="1", docs_url=None, redoc_url=None)
    app.state.service = service
    for route in ROUTES:
        app.add_api_route(route.path, _endpoint(service, route), methods=[route.method], name=route.call or "livez")
    from keel.server.console import mount_console

    mount_console(app, service)
    app.add_middleware(BoundedBodies, max_bytes=MAX_BODY_BYTES, timeout=BODY_TIMEOUT)
    return app


def _endpoint(service: GovernanceService, route: Route) -> Any:
    async def endpoint(request: Request) -> Any:
        if route.permission == "public":
            return {"status": "ok"}
        try:
            if route.method in ("POST", "PUT"):
                body = await request.json() if await request.body() else {}
                if not isinstance(body, dict):
                    raise ValueError("the request body must be a JSON object")
                args: dict[str, Any] = dict(body)
            else:
                args = dict(request.query_params)
            args.update(request.path_params)  # the path names the object, whatever the body says
            return service.call(route.call, bearer(request), args)
        except (KeelError, ValueError) as error:
            return _error(error)
    return endpoint


def _error(error: Exception) -> JSONResponse:
    status = next(code for kind, code in STATUS if isinstance(error, kind))
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": type(error).__name__, "detail": str(error)}, status_code=status, headers=headers)
