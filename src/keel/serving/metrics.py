"""Prometheus metrics of the server: requests by route and status, latency, scores, load, versions.

With several uvicorn workers a scrape reaches one of them, so `keel serve` then sets
``PROMETHEUS_MULTIPROC_DIR`` and every worker's /metrics reports all workers together
(prometheus-client's multiprocess mode; live gauges per worker process).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

ROUTES = frozenset({"/v1/score", "/v1/score/batch", "/admin/reload", "/admin/shadow", "/livez", "/readyz",
                    "/metrics"})


class Metrics:
    """The process's counters; route labels are the known routes or ``other`` (bounded cardinality)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("keel_requests", "Answered requests", ["route", "status"], registry=self.registry)
        self.latency = Histogram("keel_request_seconds", "Time to answer", ["route"], registry=self.registry,
                                 buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
        self.scores = Histogram("keel_score", "Probabilities given", registry=self.registry,
                                buckets=tuple(i / 10 for i in range(1, 11)))
        self.version = Gauge("keel_model_version", "Version being served", ["model"], registry=self.registry,
                             multiprocess_mode="liveall")
        self.in_flight = Gauge("keel_in_flight", "Scoring requests being answered", registry=self.registry,
                               multiprocess_mode="livesum")
        self.shed = Counter("keel_shed", "Requests refused to protect the server", ["reason"], registry=self.registry)
        self.shadow = Counter("keel_shadow", "Shadow scorings by outcome", ["outcome"], registry=self.registry)
        self.shadow_version = Gauge("keel_shadow_version", "Challenger version scoring in the shadow (0: none)",
                                    registry=self.registry, multiprocess_mode="liveall")

    @staticmethod
    def route(path: str) -> str:
        """The label for a request path."""
        return path if path in ROUTES else "other"

    def exposition(self) -> bytes:
        """The text a scrape gets: this process's metrics, or every worker's in multiprocess mode."""
        if os.environ.get(MULTIPROCESS_DIR):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


def process_ended() -> None:
    """Drop this worker's live gauges from the shared files (multiprocess mode only)."""
    if os.environ.get(MULTIPROCESS_DIR):
        multiprocess.mark_process_dead(os.getpid())
