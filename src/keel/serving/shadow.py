"""The shadow challenger: scores the champion's inputs, off the hot path, and logs its answers.

Requests only hand their inputs over (a bounded queue; when it is full the shadow skips
them and counts it); one thread scores and writes them to the prediction log's
``shadow_predictions`` table. The answer a client gets never waits for the challenger.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from keel.serving.metrics import Metrics
from keel.serving.predictions import PredictionLog
from keel.serving.served import ServedModel

log = logging.getLogger(__name__)


class Shadow:
    """Holds the challenger engine (or None) and scores what it is offered in its own thread."""

    def __init__(
        self, prediction_log: PredictionLog | None, metrics: Metrics, *, max_pending: int = 1000
    ) -> None:
        self.engine: ServedModel | None = None
        self.enabled = True
        self._log = prediction_log
        self._metrics = metrics
        self._queue: queue.Queue[tuple[str, str, list[dict[str, Any]]]] = queue.Queue(
            maxsize=max_pending
        )
        threading.Thread(target=self._loop, name="keel-shadow", daemon=True).start()

    def set_engine(self, engine: ServedModel | None) -> None:
        """Score later requests with ``engine`` (None: no challenger)."""
        self.engine = engine
        self._metrics.shadow_version.set(engine.version if engine is not None else 0)

    def offer(self, request_id: str, time: str, inputs: list[dict[str, Any]]) -> None:
        """Queue a request's inputs for the challenger, if there is one and it is on.

        Never blocks.
        """
        if self.engine is None or not self.enabled:
            return
        try:
            self._queue.put_nowait((request_id, time, inputs))
        except queue.Full:
            self._metrics.shadow.labels("skipped").inc()

    def drain(self) -> None:
        """Wait until everything offered so far is scored and handed to the log.

        Closing the log commits it.
        """
        self._queue.join()

    def _loop(self) -> None:
        while True:
            request_id, time, inputs = self._queue.get()
            try:
                engine = self.engine
                if engine is not None:
                    decisions = engine.score_records(inputs)
                    logged = self._log is None or self._log.append_shadow(
                        request_id, time, inputs, decisions
                    )
                    self._metrics.shadow.labels("scored" if logged else "skipped").inc()
            except Exception:
                log.exception("the shadow challenger failed on request %s", request_id)
                self._metrics.shadow.labels("failed").inc()
            finally:
                self._queue.task_done()
