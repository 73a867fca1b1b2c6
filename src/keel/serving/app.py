"""The real-time scoring API (FastAPI): one record or a batch, with reasons, health probes and limits.

The engine is read once per request from ``app.state.engine``; replacing that reference
swaps the model for later requests while each request finishes on the model it started with.
Scoring one record takes a fraction of a millisecond, so it runs on the event loop (a
thread hop would cost more); batches run in the thread pool. The two scoring routes are
answered in plain ASGI (:class:`ScoringRoutes`); FastAPI serves the rest and the schema.
"""

import datetime as dt
import hmac
import sys
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Header, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from fastapi.responses import JSONResponse
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from keel.errors import DataError, FeatureStoreError
from keel.features.online import OnlineFeatures
from keel.features.stores import EventStore, MemoryStore
from keel.serving.docs import mount_local_docs
from keel.serving.engine import ScoringEngine
from keel.serving.metrics import Metrics
from keel.serving.middleware import Guard
from keel.serving.predictions import Overloaded, PredictionLog
from keel.serving.schema import BatchAnswer, ScoreAnswer, batch_model, labels_model, record_model, request_contract
from keel.serving.shadow import Shadow
from keel.web.bodies import answer, read_body, send_json

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
    body_timeout: float = 10.0,
    max_per_client: int = 64,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    feature_store: EventStore | None = None,
    monitoring_file: Path | None = None,
) -> FastAPI:
    """The API for one model's contract; ``app.state.engine`` may later be replaced by a compatible engine.

    ``reload`` loads the engine to swap in (``POST /admin/reload`` with ``X-API-Key``);
    admin routes answer 403 when no ``api_key`` is configured. With a ``prediction_log``, every
    answer is logged (and committed) before it is sent; a log that is behind sheds load with 503,
    as do more than ``max_in_flight`` scoring requests and requests not answered in ``request_timeout`` s.
    A body not received within ``body_timeout`` s is 408, and a client address with ``max_per_client``
    requests open gets 503 (:class:`~keel.serving.middleware.Guard`).
    ``app.state.shadow`` holds the shadow challenger (none at first).

    A model trained with window or calendar features takes the raw transaction: its features
    are computed from ``feature_store`` (in process by default) and the transaction is kept
    there, record by record in order, before scoring; the log holds the raw and computed
    inputs. ``POST /v1/labels`` (with the API key) stores labels that arrived, for later features.
    ``monitoring_file`` (the latest ``keel monitor`` results) adds drift gauges to ``/metrics``.
    """
    contract = engine.model.metadata.get("contract") or {}
    described = engine.model.metadata.get("features")
    online = OnlineFeatures.of_model(described, feature_store) if described else None
    remote_store = online is not None and bool(online.plan.windows) and not isinstance(online.store, MemoryStore)
    Record = record_model(request_contract(engine.model.metadata))
    Batch = batch_model(Record, max_batch)
    app = FastAPI(title=f"Keel scoring: {engine.name}", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Probability, decision and adverse-action reasons for credit decisions.")
    mount_local_docs(app, title=f"{app.title} - Swagger UI")  # Swagger UI from the package, not a CDN
    metrics = Metrics(monitoring_file)
    app.state.engine = engine
    app.state.ready = True
    app.state.metrics = metrics
    app.state.shadow = Shadow(prediction_log, metrics)
    app.state.online = online
    metrics.version.labels(engine.name).set(engine.version)

    @app.exception_handler(RequestValidationError)
    def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _problems(error, ())}, status_code=422)

    async def score(path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """The status and JSON answer for a scoring request's body (the routes' whole behaviour)."""
        single = path == SCORE_ONE
        try:
            request = (Record if single else Batch).model_validate_json(body)
        except ValidationError as error:
            # Field, rule and message only: never echo the input (it may be NaN, or personal data).
            return 422, {"detail": _problems(error, ("body",))}
        current: ScoringEngine = app.state.engine
        inputs = [request.model_dump()] if single else [r.model_dump() for r in request.records]

        raw = list(inputs)  # the records as sent; ``inputs`` gains their computed features

        def decide() -> list[dict[str, Any]]:
            if online is not None:  # in order: a record's features see the records before it
                inputs[:] = [{**r, **f} for r, f in zip(raw, online.compute_batch(raw))]
            return current.score_records(inputs)

        try:
            inline = len(inputs) <= _INLINE_RECORDS and not remote_store  # a Redis round trip never blocks the loop
            decisions = decide() if inline else await run_in_threadpool(decide)
        except DataError as error:
            return 422, {"detail": str(error)}
        except FeatureStoreError as error:
            metrics.shed.labels("features").inc()
            return 503, {"detail": str(error)}
        request_id = uuid.uuid4().hex
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")
        if prediction_log is not None:
            try:
                await prediction_log.append_async(request_id, now, inputs, decisions)
            except Overloaded as error:
                metrics.shed.labels("log").inc()
                return 503, {"detail": str(error)}
        if online is not None:  # kept only once the answer is logged: a refused request leaves no event
            try:
                await run_in_threadpool(online.record_all, raw) if remote_store else online.record_all(raw)
            except FeatureStoreError as error:
                metrics.shed.labels("features").inc()
                return 503, {"detail": str(error)}
        app.state.shadow.offer(request_id, now, inputs)
        for decision in decisions:
            metrics.scores.observe(decision["probability"])
        return 200, ({"request_id": request_id, **decisions[0]} if single
                     else {"request_id": request_id, "results": decisions})

    _document_scoring(app, Record, Batch, max_batch)

    @app.get("/livez", summary="The process is alive")
    async def livez() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", summary="A verified model is loaded and the server is not draining")
    async def readyz() -> JSONResponse:
        current: ScoringEngine = app.state.engine
        if not app.state.ready:
            return JSONResponse({"status": "draining"}, status_code=503)
        if prediction_log is not None and not prediction_log.intact():
            return JSONResponse({"status": "prediction log lost: restart to reopen it"}, status_code=503)
        return JSONResponse({"status": "ready", "model": current.name, "version": current.version})

    @app.get("/metrics", summary="Prometheus metrics of this process")
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    def authorize(x_api_key: str) -> None:
        """401 without a key, 403 with a wrong one (or when the server has none: then nothing is allowed)."""
        if not x_api_key:
            raise HTTPException(401, "admin and label routes need the server's API key in X-API-Key",
                                headers={"WWW-Authenticate": "X-API-Key"})
        if api_key is None or not hmac.compare_digest(x_api_key.encode(), api_key.encode()):
            raise HTTPException(403, "the X-API-Key given is not this server's API key")

    @app.post("/admin/reload", summary="Load the model version again from the registry and swap it in")
    def admin_reload(x_api_key: str = Header(default="")) -> dict[str, Any]:
        authorize(x_api_key)
        return swap()

    if described and described["windows"]:
        Labels = labels_model(described, max_batch)

        @app.post("/v1/labels", summary="Store labels that arrived for scored events (needs X-API-Key)")
        def labels(body: Labels, x_api_key: str = Header(default="")) -> dict[str, Any]:  # type: ignore[valid-type]
            """Each label updates its kept event, so later features read it; ``unknown`` lists ids not kept."""
            authorize(x_api_key)
            rows = [label.model_dump() for label in body.labels]  # type: ignore[attr-defined]
            id_column = described["id_column"]
            try:  # labels no window reads are only logged
                stored = online.label_groups(list(described["labels"])) > 0
                unknown = [row[id_column] for row in rows if stored and not online.update(row)]
            except FeatureStoreError as error:
                raise HTTPException(503, str(error)) from error
            if prediction_log is not None:
                now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")
                try:
                    prediction_log.append_labels(now, id_column, rows)
                except Overloaded as error:
                    raise HTTPException(503, str(error)) from error
            return {"updated": len(rows) - len(unknown) if stored else 0, "unknown": unknown}

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
        """Refuse (409) a version whose inputs or online features differ: they are fixed when the server starts."""
        metadata = candidate.model.metadata
        if metadata.get("contract") != contract or metadata.get("features") != described:
            raise HTTPException(409, f"version {candidate.version} reads other inputs; {consequence} "
                                     f"(restart the server to change the request schema)")

    app.state.swap = swap
    app.state.check_contract = check_contract
    app.add_middleware(ScoringRoutes, score=score)
    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    app.add_middleware(Guard, metrics=metrics, max_in_flight=max_in_flight, timeout=request_timeout,
                       max_body_bytes=max_body_bytes, body_timeout=body_timeout, max_per_client=max_per_client)
    return app


SCORE_ONE, SCORE_BATCH = "/v1/score", "/v1/score/batch"


class ScoringRoutes:
    """``POST /v1/score`` and ``/v1/score/batch`` in plain ASGI; every other request goes on to FastAPI.

    FastAPI's request stack (routing, dependency solving, body parsing) cost about 150 us per
    request, a third of scoring one record; pydantic validates the raw JSON here instead, with
    the same models, and the routes stay in the OpenAPI schema (:func:`_document_scoring`).
    """

    def __init__(self, app: ASGIApp, score: Callable[[str, bytes], Awaitable[tuple[int, dict[str, Any]]]]) -> None:
        self.app = app
        self.score = score

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in (SCORE_ONE, SCORE_BATCH):
            await self.app(scope, receive, send)
            return
        media = dict(scope.get("headers") or []).get(b"content-type", b"").split(b";")[0].strip().lower()
        if media != b"application/json":  # a cross-site form can send text/plain or a form, never JSON
            await answer(send, 415, "scoring takes Content-Type: application/json")
            return
        body = await read_body(receive, max_bytes=sys.maxsize)  # Guard has read and bounded it already
        if body is None:
            return
        status, content = await self.score(scope["path"], body)
        await send_json(send, status, content, retry_after=1 if status == 503 else None)


def _problems(error: ValidationError | RequestValidationError, prefix: tuple[str, ...]) -> list[dict[str, Any]]:
    """Each problem's place, rule and message, without the input it was about."""
    return [{"loc": [*prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in error.errors()]


def _document_scoring(app: FastAPI, Record: type[BaseModel], Batch: type[BaseModel], max_batch: int) -> None:
    """Put the scoring routes, answered by :class:`ScoringRoutes`, into the app's OpenAPI schema."""
    router = APIRouter()
    refusals: dict[int | str, dict[str, Any]] = {422: {"description": "A field breaks the contract"},
                                                  503: {"description": "Shed: retry after Retry-After seconds"}}

    # Never called: the plain-ASGI routes answer first. Their signatures declare the bodies.
    @router.post(SCORE_ONE, summary="Score one record", response_model=ScoreAnswer, responses=refusals)
    def score_one(record: Record) -> None:  # type: ignore[valid-type]
        raise NotImplementedError

    @router.post(SCORE_BATCH, summary=f"Score up to {max_batch} records", response_model=BatchAnswer,
                 responses=refusals)
    def score_batch(batch: Batch) -> None:  # type: ignore[valid-type]
        raise NotImplementedError

    app.include_router(router)
