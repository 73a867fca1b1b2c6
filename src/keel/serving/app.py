"""The real-time scoring API (FastAPI): one record or a batch, with reasons, health probes and limits.

The engine is read once per request from ``app.state.engine``; replacing that reference
swaps the model for later requests while each request finishes on the model it started with.
"""


import datetime as dt
import hmac
import time
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Header, HTTPException, Request, Response
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from keel.serving.engine import ScoringEngine
from keel.serving.predictions import Overloaded, PredictionLog
from keel.serving.schema import batch_model, record_model


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 before any parsing."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _too_large(send, self.max_bytes)
            return
        seen = 0

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await _too_large(send, self.max_bytes)


class _TooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    body = f'{{"detail":"request body over the limit of {limit} bytes"}}'.encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class Metrics:
    """Prometheus metrics of one server process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("keel_requests", "Answered requests", ["route", "status"], registry=self.registry)
        self.latency = Histogram("keel_request_seconds", "Time to answer", ["route"], registry=self.registry,
                                 buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
        self.scores = Histogram("keel_score", "Probabilities given", registry=self.registry,
                                buckets=tuple(i / 10 for i in range(1, 11)))
        self.version = Gauge("keel_model_version", "Version being served", ["model"], registry=self.registry)


def create_app(
    engine: ScoringEngine,
    *,
    max_batch: int = 1000,
    max_body_bytes: int = 2_000_000,
    reload: Callable[[], ScoringEngine] | None = None,
    api_key: str | None = None,
    allowed_hosts: list[str] | None = None,
    prediction_log: PredictionLog | None = None,
) -> FastAPI:
    """The API for one model's contract; ``app.state.engine`` may later be replaced by a compatible engine.

    ``reload`` loads the engine to swap in (``POST /admin/reload`` with ``X-API-Key``);
    admin routes answer 403 when no ``api_key`` is configured. With a ``prediction_log``, every
    answer is logged (and committed) before it is sent; a log that is behind sheds load with 503.
    """
    contract = engine.model.metadata.get("contract") or {}
    Record = record_model(contract)
    Batch = batch_model(Record, max_batch)
    app = FastAPI(title=f"Keel scoring: {engine.name}",
                  description="Probability, decision and adverse-action reasons for credit decisions.")
    app.state.engine = engine
    app.state.ready = True
    metrics = Metrics()
    metrics.version.labels(engine.name).set(engine.version)

    @app.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Any]) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = request.url.path if request.url.path.startswith(("/v1/", "/admin/")) else "other"
        metrics.requests.labels(route, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - start)
        return response

    @app.exception_handler(RequestValidationError)
    def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        # Field, rule and message only: never echo the input (it may be NaN, or personal data).
        detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in error.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.post("/v1/score", summary="Score one record")
    def score(record: Record) -> dict[str, Any]:  # type: ignore[valid-type]
        current: ScoringEngine = app.state.engine
        inputs = [record.model_dump()]
        request_id, decisions = _answer(current, inputs)
        return {"request_id": request_id, **decisions[0]}

    @app.post("/v1/score/batch", summary=f"Score up to {max_batch} records")
    def score_batch(batch: Batch) -> dict[str, Any]:  # type: ignore[valid-type]
        current: ScoringEngine = app.state.engine
        request_id, decisions = _answer(current, [r.model_dump() for r in batch.records])
        return {"request_id": request_id, "results": decisions}

    def _answer(current: ScoringEngine, inputs: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
        """Score, log durably (when configured) and count; the caller sends the answer."""
        request_id = uuid.uuid4().hex
        decisions = current.score_records(inputs)
        if prediction_log is not None:
            now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")
            try:
                prediction_log.append(request_id, now, inputs, decisions)
            except Overloaded as error:
                raise HTTPException(503, str(error), headers={"Retry-After": "1"}) from error
        for decision in decisions:
            metrics.scores.observe(decision["probability"])
        return request_id, decisions

    @app.get("/livez", summary="The process is alive")
    def livez() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", summary="A verified model is loaded and the server is not draining")
    def readyz(request: Request) -> JSONResponse:
        current: ScoringEngine = request.app.state.engine
        if not request.app.state.ready:
            return JSONResponse({"status": "draining"}, status_code=503)
        return JSONResponse({"status": "ready", "model": current.name, "version": current.version})

    @app.get("/metrics", summary="Prometheus metrics of this process")
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/admin/reload", summary="Load the model version again from the registry and swap it in")
    def admin_reload(x_api_key: str = Header(default="")) -> dict[str, Any]:
        if api_key is None or not hmac.compare_digest(x_api_key.encode(), api_key.encode()):
            raise HTTPException(403, "admin routes need the server's API key in X-API-Key")
        return swap()

    def swap() -> dict[str, Any]:
        """Load with ``reload`` and serve the result; any failure keeps the current model (409)."""
        if reload is None:
            raise HTTPException(409, "this server was started without a registry to reload from")
        current: ScoringEngine = app.state.engine
        try:
            candidate = reload()
        except Exception as error:  # noqa: BLE001 - any failure to load or verify keeps the old model serving
            raise HTTPException(409, f"reload failed, still serving version {current.version}: {error}") from error
        if candidate.model.metadata.get("contract") != contract:
            raise HTTPException(409, f"version {candidate.version} reads other inputs; still serving version "
                                     f"{current.version} (restart the server to change the request schema)")
        app.state.engine = candidate
        metrics.version.labels(candidate.name).set(candidate.version)
        return {"previous": current.version, "serving": candidate.version}

    app.state.swap = swap
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    return app
