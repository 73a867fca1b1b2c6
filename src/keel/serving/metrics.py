"""Prometheus metrics of one server process: requests by route and status, latency, scores, load."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
        self.version = Gauge("keel_model_version", "Version being served", ["model"], registry=self.registry)
        self.in_flight = Gauge("keel_in_flight", "Scoring requests being answered", registry=self.registry)
        self.shed = Counter("keel_shed", "Requests refused to protect the server", ["reason"], registry=self.registry)
        self.shadow = Counter("keel_shadow", "Shadow scorings by outcome", ["outcome"], registry=self.registry)
        self.shadow_version = Gauge("keel_shadow_version", "Challenger version scoring in the shadow (0: none)",
                                    ["model"], registry=self.registry)

    @staticmethod
    def route(path: str) -> str:
        """The label for a request path."""
        return path if path in ROUTES else "other"
