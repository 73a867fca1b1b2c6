"""How the CLI reaches the governance service: over HTTP (``KEEL_SERVER``) or in this process.

Both clients take an operation name from :data:`keel.server.routes.ROUTES` and its arguments,
and authenticate the same way (an API token, or a password for ``create_token``), so a
command behaves the same against a bank's server and on a laptop.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Protocol

from keel.errors import IntegrityError, KeelError, RegistryError
from keel.registry.principal import AuthenticationError, PermissionDenied
from keel.server.routes import route_of
from keel.server.service import GovernanceError, GovernanceService

_ERRORS: dict[int, type[KeelError]] = {
    401: AuthenticationError,
    403: GovernanceError,
    404: RegistryError,
    503: IntegrityError,
}


class ServiceError(KeelError, RuntimeError):
    """The governance service could not be reached, or answered with something other than JSON."""

    exit_code = 6


class Client(Protocol):
    """Calls one governance operation by name."""

    def call(self, operation: str, **args: Any) -> Any:
        """Run ``operation`` (a :data:`ROUTES` name) with ``args``; refusals raise KeelErrors."""
        ...


class LocalClient:
    """The service in this process, called exactly as the HTTP API calls it.

    Both go through :meth:`GovernanceService.call`.
    """

    def __init__(self, service: GovernanceService, token: str | None) -> None:
        self.service, self.token = service, token

    def call(self, operation: str, **args: Any) -> Any:
        """Authenticate, check the route's permission, run the operation."""
        return self.service.call(operation, self.token, args)


class HttpClient:
    """The service at ``url`` (``KEEL_SERVER``), with ``Authorization: Bearer <token>``."""

    def __init__(self, url: str, token: str | None, *, timeout: float = 30.0) -> None:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ServiceError(f"KEEL_SERVER must be an http:// or https:// URL; got {url!r}")
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout

    def call(self, operation: str, **args: Any) -> Any:
        """Send the operation as its route's request; map 401/403/404/422 back to Keel errors."""
        route = route_of(operation)
        path = route.path
        for key in [k for k in args if "{" + k + "}" in path]:
            path = path.replace("{" + key + "}", urllib.parse.quote(str(args.pop(key)), safe=""))
        body = None
        if route.method in ("GET", "DELETE"):
            query = {k: v for k, v in args.items() if v is not None}
            path += f"?{urllib.parse.urlencode(query)}" if query else ""
        else:
            body = json.dumps(args).encode()
        request = urllib.request.Request(  # noqa: S310 - __init__ allows only http(s) URLs
            self.url + path,
            data=body,
            method=route.method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        if self.token and route.permission != "password":
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310 - http(s), see __init__
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as error:
            detail = _detail(error)
            raise _ERRORS.get(error.code, KeelError)(detail) from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise ServiceError(
                f"the governance service at {self.url} cannot be reached or did not answer JSON: "
                f"{error}; check KEEL_SERVER"
            ) from None


def _detail(error: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(error.read()).get("detail"))
    except ValueError:
        return f"HTTP {error.code}"


__all__ = ["Client", "HttpClient", "LocalClient", "PermissionDenied", "ServiceError"]
