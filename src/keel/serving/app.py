"""The real-time scoring API (FastAPI): one record or a batch, with reasons, health probes and limits.

The engine is read once per request from ``app.state.engine``; replacing that reference
swaps the model for later requests while each request finishes on the model it started with.
"""


import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from keel.serving.engine import ScoringEngine
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


def create_app(engine: ScoringEngine, *, max_batch: int = 1000, max_body_bytes: int = 2_000_000) -> FastAPI:
    """The API for one model's contract; ``app.state.engine`` may later be replaced by a compatible engine."""
    contract = engine.model.metadata.get("contract") or {}
    Record = record_model(contract)
    Batch = batch_model(Record, max_batch)
    app = FastAPI(title=f"Keel scoring: {engine.name}",
                  description="Probability, decision and adverse-action reasons for credit decisions.")
    app.state.engine = engine
    app.state.ready = True

    @app.exception_handler(RequestValidationError)
    def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        # Field, rule and message only: never echo the input (it may be NaN, or personal data).
        detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in error.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.post("/v1/score", summary="Score one record")
    def score(record: Record) -> dict[str, Any]:  # type: ignore[valid-type]
        current: ScoringEngine = app.state.engine
        return {"request_id": uuid.uuid4().hex, **current.score_records([record.model_dump()])[0]}

    @app.post("/v1/score/batch", summary=f"Score up to {max_batch} records")
    def score_batch(batch: Batch) -> dict[str, Any]:  # type: ignore[valid-type]
        current: ScoringEngine = app.state.engine
        decisions = current.score_records([r.model_dump() for r in batch.records])
        return {"request_id": uuid.uuid4().hex, "results": decisions}

    @app.get("/livez", summary="The process is alive")
    def livez() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", summary="A verified model is loaded and the server is not draining")
    def readyz(request: Request) -> JSONResponse:
        current: ScoringEngine = request.app.state.engine
        if not request.app.state.ready:
            return JSONResponse({"status": "draining"}, status_code=503)
        return JSONResponse({"status": "ready", "model": current.name, "version": current.version})

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    return app
