"""`keel server`'s versioned JSON API: one route per row of :data:`keel.server.routes.ROUTES`.

Each route hands its path parameters, query (GET) or JSON body (POST, PUT) and bearer token to
:meth:`GovernanceService.call`, which authenticates, checks the permission and validates the
arguments. Credentials: ``Authorization: Bearer <token>``. Errors: 401 no or bad credentials,
403 permission or lifecycle rule refused, 404 unknown model or version, 422 bad input.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, TypeAdapter, create_model

from keel.errors import IntegrityError, KeelError, RegistryError
from keel.registry.principal import AuthenticationError, PermissionDenied
from keel.server.routes import ROUTES, Route
from keel.server.service import GovernanceError, GovernanceService
from keel.web.bodies import BoundedBodies

MAX_BODY_BYTES, BODY_TIMEOUT = (
    1_000_000,
    10.0,
)  # a request body: at most 1 MB, received whole within 10 s

STATUS = (
    (AuthenticationError, 401),
    (PermissionDenied, 403),
    (GovernanceError, 403),
    (RegistryError, 404),
    (IntegrityError, 503),
    (KeelError, 422),
    (ValueError, 422),
)


def bearer(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if any."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def create_governance_app(service: GovernanceService) -> FastAPI:
    """The FastAPI app over one service; every route goes through :meth:`GovernanceService.call`."""
    app = FastAPI(title="Keel governance service", version="1", docs_url=None, redoc_url=None)
    app.state.service = service
    for route in ROUTES:
        app.add_api_route(
            route.path,
            _endpoint(service, route),
            methods=[route.method],
            name=route.call or "livez",
            openapi_extra=_documented(service, route),
        )
    from keel.server.console import mount_console

    mount_console(app, service)
    _declare_bearer(app)
    app.add_middleware(BoundedBodies, max_bytes=MAX_BODY_BYTES, timeout=BODY_TIMEOUT)
    return app


def _endpoint(service: GovernanceService, route: Route) -> Any:
    async def endpoint(request: Request) -> Any:
        if route.permission == "public":
            return {"status": "ok"}
        try:
            if route.method in ("POST", "PUT"):
                raw = await request.body()
                # orjson refuses nesting deeper than 1,024 (the standard library recursed until it
                # crashed)
                try:
                    body = orjson.loads(raw) if raw else {}
                except orjson.JSONDecodeError as error:
                    raise ValueError(f"the request body is not JSON: {error}") from None
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


def _declare_bearer(app: FastAPI) -> None:
    """Name the bearer-token scheme that the documented routes' ``security`` refers to."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token: keel token create",
        }
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _documented(service: GovernanceService, route: Route) -> dict[str, Any] | None:
    """The route's parameters and body in OpenAPI, read from the service method's signature.

    The signature is what the service validates.
    """
    if not route.call:
        return None
    signature = inspect.signature(getattr(service, route.call), eval_str=True)
    fields = {name: p for name, p in signature.parameters.items() if name != "by"}
    in_path = re.findall(r"{(\w+)}", route.path)
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": TypeAdapter(fields.pop(name).annotation).json_schema(),
        }
        for name in in_path
    ]
    documented: dict[str, Any] = {"parameters": parameters}
    if route.method == "GET":
        parameters += [
            {
                "name": name,
                "in": "query",
                "required": p.default is p.empty,
                "schema": TypeAdapter(p.annotation).json_schema(),
            }
            for name, p in fields.items()
        ]
    elif route.method in ("POST", "PUT"):
        body: type[BaseModel] = create_model(  # type: ignore[call-overload]
            f"{route.call}_body",
            __config__=ConfigDict(extra="forbid"),
            **{
                name: (p.annotation, ... if p.default is p.empty else p.default)
                for name, p in fields.items()
            },
        )
        documented["requestBody"] = {
            "required": any(p.default is p.empty for p in fields.values()),
            "content": {"application/json": {"schema": body.model_json_schema()}},
        }
    if route.permission != "public":
        documented["security"] = [{"bearer": []}] if route.permission != "password" else []
    return documented


def _error(error: Exception) -> JSONResponse:
    status = next(code for kind, code in STATUS if isinstance(error, kind))
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {"error": type(error).__name__, "detail": str(error)}, status_code=status, headers=headers
    )
