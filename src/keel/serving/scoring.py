"""The scoring service: the model being served, its hot swap and contract, and every request's path.

Each request validates its raw JSON body against the contract's models, computes the online
features (when the model has them), scores, logs the answer, keeps the transactions in the
feature store, offers the inputs to the shadow challenger and observes the scores, in that
order: an answer is logged before it is sent, and a refused request leaves no event. The
service answers with a status and JSON-able content (or raises :class:`Refused`), so it is
used and tested without HTTP; :func:`keel.serving.app.create_app` puts routes in front of it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from keel.errors import DataError, FeatureStoreError, KeelError
from keel.features.online import OnlineFeatures
from keel.features.stores import EventStore, MemoryStore
from keel.serving.metrics import Metrics
from keel.serving.predictions import Overloaded, PredictionLog
from keel.serving.schema import batch_model, labels_model, record_model, request_contract
from keel.serving.served import ServedModel
from keel.serving.shadow import Shadow

SCORE_ONE, SCORE_BATCH = "/v1/score", "/v1/score/batch"
INLINE_RECORDS = (
    16  # batches up to this size score on the event loop, larger ones in the thread pool
)


class Refused(KeelError, RuntimeError):
    """A request, swap or label update the service refuses.

    ``status`` says why as an HTTP status, ``detail`` how.
    """

    def __init__(self, status: int, detail: str | list[dict[str, Any]]) -> None:
        super().__init__(
            detail if isinstance(detail, str) else f"the request breaks the contract: {detail}"
        )
        self.status = status
        self.detail = detail


class ScoringService:
    """Serves one model contract: ``engine`` is the version scoring now.

    Another version with the same contract may replace it.

    Each request reads ``engine`` once, so a swap serves later requests while each request
    finishes on the version it started with. ``reload`` loads the version :meth:`swap` puts in;
    the request models (:attr:`Record`, :attr:`Batch`, :attr:`Labels`) come from the first
    engine's contract and stay fixed.
    """

    def __init__(
        self,
        engine: ServedModel,
        *,
        max_batch: int = 1000,
        reload: Callable[[], ServedModel] | None = None,
        prediction_log: PredictionLog | None = None,
        feature_store: EventStore | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.engine = engine
        self.reload = reload
        self.prediction_log = prediction_log
        self.metrics = metrics if metrics is not None else Metrics()
        self.shadow = Shadow(prediction_log, self.metrics)
        self.contract = engine.model.metadata.get("contract") or {}
        self.described: dict[str, Any] | None = engine.model.metadata.get("features")
        self.online = (
            OnlineFeatures.of_model(self.described, feature_store) if self.described else None
        )
        self._remote_store = (
            self.online is not None
            and bool(self.online.plan.windows)
            and not isinstance(self.online.store, MemoryStore)
        )
        self.Record = record_model(request_contract(engine.model.metadata))
        self.Batch = batch_model(self.Record, max_batch)
        self.Labels = (
            labels_model(self.described, max_batch)
            if self.described and self.described["windows"]
            else None
        )
        self.metrics.version.labels(engine.name).set(engine.version)

    async def score(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """The status and JSON answer for the raw body of a request to ``path``.

        ``path`` is :data:`SCORE_ONE` or a batch's.
        """
        single = path == SCORE_ONE
        try:
            raw = self.parse(body, single=single)
            current = self.engine
            inputs, decisions = await self.decide(current, raw)
            request_id = uuid.uuid4().hex
            now = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
            await self.log(request_id, now, inputs, decisions)
            await self.keep_events(raw)
        except Refused as refused:
            return refused.status, {"detail": refused.detail}
        self.observe(request_id, now, inputs, decisions)
        return 200, (
            {"request_id": request_id, **decisions[0]}
            if single
            else {"request_id": request_id, "results": decisions}
        )

    def parse(self, body: bytes, *, single: bool) -> list[dict[str, Any]]:
        """The records of a raw JSON body (one, or a batch's).

        A 422 names each field and rule broken, never its value.
        """
        try:
            request = (self.Record if single else self.Batch).model_validate_json(body)
        except ValidationError as error:  # the input may be NaN, or personal data
            raise Refused(422, problems(error.errors(), ("body",))) from error
        return [request.model_dump()] if single else [r.model_dump() for r in request.records]  # type: ignore[attr-defined]

    async def decide(
        self, engine: ServedModel, raw: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The inputs scored (raw records with their online features) and ``engine``'s decisions.

        Up to :data:`INLINE_RECORDS` records score on the event loop, more in the thread pool, as
        does any request reading a remote feature store (a Redis round trip never blocks the loop).
        Data that cannot be scored is 422; an unreachable feature store is 503.
        """

        def decide() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            inputs = raw
            if self.online is not None:  # in order: a record's features see the records before it
                inputs = [
                    {**r, **f} for r, f in zip(raw, self.online.compute_batch(raw), strict=True)
                ]
            return inputs, engine.score_records(inputs)

        inline = len(raw) <= INLINE_RECORDS and not self._remote_store
        try:
            return decide() if inline else await run_in_threadpool(decide)
        except DataError as error:
            raise Refused(422, str(error)) from error
        except FeatureStoreError as error:
            self.metrics.shed.labels("features").inc()
            raise Refused(503, str(error)) from error

    async def log(
        self,
        request_id: str,
        now: str,
        inputs: list[dict[str, Any]],
        decisions: list[dict[str, Any]],
    ) -> None:
        """Commit the answer to the prediction log (when there is one); a log behind is 503."""
        if self.prediction_log is None:
            return
        try:
            await self.prediction_log.append_async(request_id, now, inputs, decisions)
        except Overloaded as error:
            self.metrics.shed.labels("log").inc()
            raise Refused(503, str(error)) from error

    async def keep_events(self, raw: list[dict[str, Any]]) -> None:
        """Keep the logged records as events for later features (online models only).

        A store unreachable is 503.
        """
        if self.online is None:
            return
        try:
            await run_in_threadpool(
                self.online.record_all, raw
            ) if self._remote_store else self.online.record_all(raw)
        except FeatureStoreError as error:
            self.metrics.shed.labels("features").inc()
            raise Refused(503, str(error)) from error

    def observe(
        self,
        request_id: str,
        now: str,
        inputs: list[dict[str, Any]],
        decisions: list[dict[str, Any]],
    ) -> None:
        """Offer an answered request's inputs to the shadow challenger and count its scores."""
        self.shadow.offer(request_id, now, inputs)
        for decision in decisions:
            self.metrics.scores.observe(decision["probability"])

    def store_labels(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Update each labelled event kept, so later features read it, and log the labels.

        ``unknown`` lists the ids not kept. Labels no window reads are only logged. An unreachable
        store or a log that is behind is 503.
        """
        if self.online is None or self.Labels is None or self.described is None:
            raise Refused(
                409, f"model {self.engine.name} keeps no events: there is nothing to label"
            )
        id_column = self.described["id_column"]
        try:
            stored = self.online.label_groups(list(self.described["labels"])) > 0
            unknown = [row[id_column] for row in rows if stored and not self.online.update(row)]
        except FeatureStoreError as error:
            raise Refused(503, str(error)) from error
        if self.prediction_log is not None:
            now = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
            try:
                self.prediction_log.append_labels(now, id_column, rows)
            except Overloaded as error:
                raise Refused(503, str(error)) from error
        return {"updated": len(rows) - len(unknown) if stored else 0, "unknown": unknown}

    def swap(self) -> dict[str, Any]:
        """Load with ``reload`` and serve the result; any failure keeps the current model (409)."""
        if self.reload is None:
            raise Refused(409, "this server was started without a registry to reload from")
        current = self.engine
        try:
            candidate = self.reload()
        except Exception as error:
            raise Refused(
                409, f"reload failed, still serving version {current.version}: {error}"
            ) from error
        self.check_contract(candidate, f"still serving version {current.version}")
        self.engine = candidate
        self.metrics.version.labels(candidate.name).set(candidate.version)
        return {"previous": current.version, "serving": candidate.version}

    def check_contract(self, candidate: ServedModel, consequence: str) -> None:
        """Refuse (409) a version whose inputs or online features differ.

        They are fixed when the service starts.
        """
        metadata = candidate.model.metadata
        if metadata.get("contract") != self.contract or metadata.get("features") != self.described:
            raise Refused(
                409,
                f"version {candidate.version} reads other inputs; {consequence} "
                f"(restart the server to change the request schema)",
            )


def problems(errors: Iterable[Mapping[str, Any]], prefix: tuple[str, ...]) -> list[dict[str, Any]]:
    """Each validation error's place (under ``prefix``), rule and message, without its input."""
    return [{"loc": [*prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in errors]
