"""The real-time scoring API (FastAPI): one record or a batch, with reasons, health probes, limits.

The scoring itself is a :class:`~keel.serving.scoring.ScoringService`; this module puts routes,
limits and probes in front of it. ``app.state.engine`` is the service's engine: replacing it
swaps the model for later requests while each request finishes on the model it started with.
The two scoring routes are answered in plain ASGI (:class:`ScoringRoutes`); FastAPI serves the
rest and the schema.
"""

import functools
import hmac
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from fastapi import APIRouter, FastAPI, Header, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from fastapi.responses import JSONResponse
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from starlette.datastructures import State
from starlette.types import ASGIApp, Receive, Scope, Send

from keel.features.stores import EventStore
from keel.serving.docs import mount_local_docs
from keel.serving.metrics import Metrics
from keel.serving.middleware import Guard
from keel.serving.predictions import PredictionLog
from keel.serving.schema import BatchAnswer, ScoreAnswer
from keel.serving.scoring import SCORE_BATCH, SCORE_ONE, Refused, ScoringService, problems
from keel.serving.served import ServedModel
from keel.web.bodies import answer, read_body, send_json

__all__ = [
    "SCORE_BATCH",
    "SCORE_ONE",
    "ScoringRoutes",
    "ServingState",
    "ShadowSwitch",
    "create_app",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")


class ShadowSwitch(BaseModel):
    """Turn the shadow challenger on or off."""

    enabled: bool


class ServingState(State):
    """``app.state`` whose ``engine`` is the service's.

    Reading it gives the live engine; setting it swaps the model.
    """

    def __init__(self, service: ScoringService) -> None:
        super().__init__({"service": service})

    @property
    def engine(self) -> ServedModel:
        """The version the service scores with now."""
        return self.service.engine

    def __setattr__(self, key: str, value: Any) -> None:
        if key == "engine":
            self.service.engine = value
        else:
            super().__setattr__(key, value)


def create_app(
    engine: ServedModel,
    *,
    max_batch: int = 1000,
    max_body_bytes: int = 2_000_000,
    reload: Callable[[], ServedModel] | None = None,
    api_key: str | None = None,
    allowed_hosts: list[str] | None = None,
    prediction_log: PredictionLog | None = None,
    max_in_flight: int = 256,
    request_timeout: float = 10.0,
    body_timeout: float = 10.0,
    max_per_client: int = 64,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    feature_store: EventStore | None = None,
    monitoring_file: Path | None = None,
) -> FastAPI:
    """The API for one model's contract; a compatible engine may later replace ``app.state.engine``.

    ``reload`` loads the served model to swap in (``POST /admin/reload`` with ``X-API-Key``);
    admin routes answer 403 when no ``api_key`` is configured. With a ``prediction_log``, every
    answer is logged (and committed) before it is sent; a log that is behind sheds load with 503,
    as do more than ``max_in_flight`` scoring requests and requests not answered in
    ``request_timeout`` s. A body not received within ``body_timeout`` s is 408, and a client
    address with ``max_per_client`` requests open gets 503
    (:class:`~keel.serving.middleware.Guard`).
    ``app.state.shadow`` holds the shadow challenger (none at first).

    A model trained with window or calendar features takes the raw transaction: its features
    are computed from ``feature_store`` (in process by default) and the transaction is kept
    there, record by record in order, before scoring; the log holds the raw and computed
    inputs. ``POST /v1/labels`` (with the API key) stores labels that arrived, for later features.
    ``monitoring_file`` (the latest ``keel monitor`` results) adds drift gauges to ``/metrics``.
    """
    service = ScoringService(
        engine,
        max_batch=max_batch,
        reload=reload,
        prediction_log=prediction_log,
        feature_store=feature_store,
        metrics=Metrics(monitoring_file),
    )
    app = FastAPI(
        title=f"Keel scoring: {engine.name}",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="Probability, decision and adverse-action reasons for credit decisions.",
    )
    mount_local_docs(
        app, title=f"{app.title} - Swagger UI"
    )  # Swagger UI from the package, not a CDN
    app.state = ServingState(service)
    app.state.ready = True
    app.state.metrics = service.metrics
    app.state.shadow = service.shadow
    app.state.online = service.online
    app.state.swap = swap = _http(service.swap)
    app.state.check_contract = _http(service.check_contract)

    @app.exception_handler(RequestValidationError)
    def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": problems(error.errors(), ())}, status_code=422)

    _document_scoring(app, service.Record, service.Batch, max_batch)

    @app.get("/livez", summary="The process is alive")
    async def livez() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", summary="A verified model is loaded and the server is not draining")
    async def readyz() -> JSONResponse:
        current = service.engine
        if not app.state.ready:
            return JSONResponse({"status": "draining"}, status_code=503)
        if prediction_log is not None and not prediction_log.intact():
            return JSONResponse(
                {"status": "prediction log lost: restart to reopen it"}, status_code=503
            )
        return JSONResponse({"status": "ready", "model": current.name, "version": current.version})

    @app.get("/metrics", summary="Prometheus metrics of this process")
    async def prometheus() -> Response:
        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/admin/reload", summary="Load the model version again from the registry and swap it in"
    )
    def admin_reload(x_api_key: str = Header(default="")) -> dict[str, Any]:
        _authorize(x_api_key, api_key)
        return swap()

    if service.Labels is not None:
        Labels, store_labels = service.Labels, _http(service.store_labels)

        @app.post(
            "/v1/labels", summary="Store labels that arrived for scored events (needs X-API-Key)"
        )
        def labels(body: Labels, x_api_key: str = Header(default="")) -> dict[str, Any]:  # type: ignore[valid-type]
            """Each label updates its kept event, so later features read it.

            ``unknown`` lists the ids not kept.
            """
            _authorize(x_api_key, api_key)
            return store_labels([label.model_dump() for label in body.labels])  # type: ignore[attr-defined]

    @app.post("/admin/shadow", summary="Turn the shadow challenger on or off")
    def admin_shadow(switch: ShadowSwitch, x_api_key: str = Header(default="")) -> dict[str, Any]:
        _authorize(x_api_key, api_key)
        shadow = service.shadow
        shadow.enabled = switch.enabled
        return {
            "enabled": shadow.enabled,
            "challenger": shadow.engine.version if shadow.engine else None,
        }

    app.add_middleware(ScoringRoutes, score=service.score)
    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    app.add_middleware(
        Guard,
        metrics=service.metrics,
        max_in_flight=max_in_flight,
        timeout=request_timeout,
        max_body_bytes=max_body_bytes,
        body_timeout=body_timeout,
        max_per_client=max_per_client,
    )
    return app


def _authorize(given: str, api_key: str | None) -> None:
    """401 without a key, 403 with a wrong one (or when the server has none: nothing is allowed)."""
    if not given:
        raise HTTPException(
            401,
            "admin and label routes need the server's API key in X-API-Key",
            headers={"WWW-Authenticate": "X-API-Key"},
        )
    if api_key is None or not hmac.compare_digest(given.encode(), api_key.encode()):
        raise HTTPException(403, "the X-API-Key given is not this server's API key")


def _http(call: Callable[_P, _R]) -> Callable[_P, _R]:
    """``call`` with the service's refusals raised as :class:`HTTPException` (status and detail)."""

    @functools.wraps(call)
    def http(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return call(*args, **kwargs)
        except Refused as refused:
            raise HTTPException(refused.status, refused.detail) from refused

    return http


class ScoringRoutes:
    """``POST /v1/score`` and ``/v1/score/batch`` in plain ASGI; other requests go on to FastAPI.

    FastAPI's request stack (routing, dependency solving, body parsing) cost about 150 us per
    request, a third of scoring one record; pydantic validates the raw JSON here instead, with
    the same models, and the routes stay in the OpenAPI schema (:func:`_document_scoring`).
    """

    def __init__(
        self, app: ASGIApp, score: Callable[[str, bytes], Awaitable[tuple[int, dict[str, Any]]]]
    ) -> None:
        self.app = app
        self.score = score

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] not in (SCORE_ONE, SCORE_BATCH)
        ):
            await self.app(scope, receive, send)
            return
        media = (
            dict(scope.get("headers") or [])
            .get(b"content-type", b"")
            .split(b";")[0]
            .strip()
            .lower()
        )
        if (
            media != b"application/json"
        ):  # a cross-site form can send text/plain or a form, never JSON
            await answer(send, 415, "scoring takes Content-Type: application/json")
            return
        body = await read_body(
            receive, max_bytes=sys.maxsize
        )  # Guard has read and bounded it already
        if body is None:
            return
        status, content = await self.score(scope["path"], body)
        await send_json(send, status, content, retry_after=1 if status == 503 else None)


def _document_scoring(
    app: FastAPI, Record: type[BaseModel], Batch: type[BaseModel], max_batch: int
) -> None:
    """Put the scoring routes, answered by :class:`ScoringRoutes`, into the app's OpenAPI schema."""
    router = APIRouter()
    refusals: dict[int | str, dict[str, Any]] = {
        422: {"description": "A field breaks the contract"},
        503: {"description": "Shed: retry after Retry-After seconds"},
    }

    # Never called: the plain-ASGI routes answer first. Their signatures declare the bodies.
    @router.post(
        SCORE_ONE, summary="Score one record", response_model=ScoreAnswer, responses=refusals
    )
    def score_one(record: Record) -> None:  # type: ignore[valid-type]
        raise NotImplementedError

    @router.post(
        SCORE_BATCH,
        summary=f"Score up to {max_batch} records",
        response_model=BatchAnswer,
        responses=refusals,
    )
    def score_batch(batch: Batch) -> None:  # type: ignore[valid-type]
        raise NotImplementedError

    app.include_router(router)
