"""The real-time scoring API (FastAPI): one record or a batch, with reasons, health probes and limits.

The engine is read once per request from ``app.state.engine``; replacing that reference
swaps the model for later requests while each request finishes on the model it started with.
Scoring one record takes a fraction of a millisecond, so it runs on the event loop (a
thread hop would cost more); batches run in the thread pool.
"""

import datetime as dt
import hmac
import json
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI, Header, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from fastapi.responses import JSONResponse
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from keel.serving.engine import ScoringEngine
from keel.serving.metrics import Metrics
from keel.serving.middleware import BodyLimit, Guard
from keel.serving.predictions import Overloaded, PredictionLog
from keel.serving.schema import BatchAnswer, ScoreAnswer, batch_model, record_model
from keel.serving.shadow import Shadow

_INLINE_RECORDS = 16  # batches up to this size score on the event loop, larger ones in the thread pool


class ShadowSwitch(BaseModel):
    """Turn the shadow challenger on or off."""

    enabled: bool


def create_app(
    engine: ScoringEngine,
    *,
    max_batch: int = 1000,
    max_body_bytes: int = 2_000_000,
    reload: Callable[[], ScoringEngine] | None = None,
    api_key: str | None = None,
    allowed_hosts: list[str] | None = None,
    prediction_log: PredictionLog | None = None,
    max_in_flight: int = 256,
    request_timeout: float = 10.0,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    """The API for one model's contract; ``app.state.engine`` may later be replaced by a compatible engine.

    ``reload`` loads the engine to swap in (``POST /admin/reload`` with ``X-API-Key``);
    admin routes answer 403 when no ``api_key`` is configured. With a ``prediction_log``, every
    answer is logged (and committed) before it is sent; a log that is behind sheds load with 503,
    as do more than ``max_in_flight`` scoring requests and requests not answered in ``request_timeout`` s.
    ``app.state.shadow`` holds the shadow challenger (none at first).
    """
    contract = engine.model.metadata.get("contract") or {}
    Record = record_model(contract)
    Batch = batch_model(Record, max_batch)
    app = FastAPI(title=f"Keel scoring: {engine.name}", lifespan=lifespan,
                  description="Probability, decision and adverse-action reasons for credit decisions.")
    metrics = Metrics()
    app.state.engine = engine
    app.state.ready = True
    app.state.metrics = metrics
    app.state.shadow = Shadow(prediction_log, metrics)
    metrics.version.labels(engine.name).set(engine.version)

    @app.exception_handler(RequestValidationError)
    def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        # Field, rule and message only: never echo the input (it may be NaN, or personal data).
        detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in error.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.post("/v1/score", summary="Score one record", response_model=ScoreAnswer)
    async def score(record: Record) -> Response:  # type: ignore[valid-type]
        current: ScoringEngine = app.state.engine
        inputs = [record.model_dump()]
        request_id, decisions = await _answer(current, inputs, current.score_records(inputs))
        return _json({"request_id": request_id, **decisions[0]})

    @app.post("/v1/score/batch", summary=f"Score up to {max_batch} records", response_model=BatchAnswer)
    async def score_batch(batch: Batch) -> Response:  # type: ignore[valid-type]
        current: ScoringEngine = app.state.engine
        inputs = [r.model_dump() for r in batch.records]
        decisions = (current.score_records(inputs) if len(inputs) <= _INLINE_RECORDS
                     else await run_in_threadpool(current.score_records, inputs))
        request_id, decisions = await _answer(current, inputs, decisions)
        return _json({"request_id": request_id, "results": decisions})

    async def _answer(current: ScoringEngine, inputs: list[dict[str, Any]],
                      decisions: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
        """Log durably (when configured), hand the inputs to the shadow and count; the caller sends the answer."""
        request_id = uuid.uuid4().hex
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")
        if prediction_log is not None:
            try:
                await prediction_log.append_async(request_id, now, inputs, decisions)
            except Overloaded as error:
                metrics.shed.labels("log").inc()
                raise HTTPException(503, str(error), headers={"Retry-After": "1"}) from error
        app.state.shadow.offer(request_id, now, inputs)
        for decision in decisions:
            metrics.scores.observe(decision["probability"])
        return request_id, decisions

    @app.get("/livez", summary="The process is alive")
    async def livez() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", summary="A verified model is loaded and the server is not draining")
    async def readyz() -> JSONResponse:
        current: ScoringEngine = app.state.engine
        if not app.state.ready:
            return JSONResponse({"status": "draining"}, status_code=503)
        return JSONResponse({"status": "ready", "model": current.name, "version": current.version})

    @app.get("/metrics", summary="Prometheus metrics of this process")
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    def authorize(x_api_key: str) -> None:
        if api_key is None or not hmac.compare_digest(x_api_key.encode(), api_key.encode()):
            raise HTTPException(403, "admin routes need the server's API key in X-API-Key")

    @app.post("/admin/reload", summary="Load the model version again from the registry and swap it in")
    def admin_reload(x_api_key: str = Header(default="")) -> dict[str, Any]:
        authorize(x_api_key)
        return swap()

    @app.post("/admin/shadow", summary="Turn the shadow challenger on or off")
    def admin_shadow(switch: ShadowSwitch, x_api_key: str = Header(default="")) -> dict[str, Any]:
        authorize(x_api_key)
        shadow: Shadow = app.state.shadow
        shadow.enabled = switch.enabled
        return {"enabled": shadow.enabled, "challenger": shadow.engine.version if shadow.engine else None}

    def swap() -> dict[str, Any]:
        """Load with ``reload`` and serve the result; any failure keeps the current model (409)."""
        if reload is None:
            raise HTTPException(409, "this server was started without a registry to reload from")
        current: ScoringEngine = app.state.engine
        try:
            candidate = reload()
        except Exception as error:  # noqa: BLE001 - any failure to load or verify keeps the old model serving
            raise HTTPException(409, f"reload failed, still serving version {current.version}: {error}") from error
        check_contract(candidate, f"still serving version {current.version}")
        app.state.engine = candidate
        metrics.version.labels(candidate.name).set(candidate.version)
        return {"previous": current.version, "serving": candidate.version}

    def check_contract(candidate: ScoringEngine, consequence: str) -> None:
        """Refuse (409) a version whose inputs differ: the request schema is fixed when the server starts."""
        if candidate.model.metadata.get("contract") != contract:
            raise HTTPException(409, f"version {candidate.version} reads other inputs; {consequence} "
                                     f"(restart the server to change the request schema)")

    app.state.swap = swap
    app.state.check_contract = check_contract
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    app.add_middleware(Guard, metrics=metrics, max_in_flight=max_in_flight, timeout=request_timeout)
    return app


def _json(content: dict[str, Any]) -> Response:
    """A JSON answer without FastAPI's response validation (the engine's dicts are already exact)."""
    return Response(json.dumps(content, separators=(",", ":")), media_type="application/json")
