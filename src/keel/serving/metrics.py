"""Prometheus metrics of the server: requests by route and status, latency, scores, load, versions.

With several uvicorn workers a scrape reaches one of them, so `keel serve` then sets
``PROMETHEUS_MULTIPROC_DIR`` and every worker's /metrics reports all workers together
(prometheus-client's multiprocess mode; live gauges per worker process).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

from keel.monitoring.latest import read_latest

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

ROUTES = frozenset(
    {
        "/v1/score",
        "/v1/score/batch",
        "/v1/labels",
        "/admin/reload",
        "/admin/shadow",
        "/livez",
        "/readyz",
        "/metrics",
    }
)


class MonitoringGauges:
    """Drift and performance gauges from the newest window of the latest ``keel monitor`` run.

    They are read at scrape time.

    The file is :func:`keel.monitoring.latest.latest_path`; it is parsed again
    only when it changes, and a scrape without one shows no monitoring gauges.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, list[GaugeMetricFamily]] = (-1, [])

    def collect(self) -> list[GaugeMetricFamily]:
        """The gauges, or none when no monitoring run has written its results yet."""
        try:
            changed = self.path.stat().st_mtime_ns
        except OSError:
            return []
        if changed != self._seen[0]:
            try:
                report = read_latest(self.path)
            except (OSError, ValueError):  # being replaced; the next scrape reads it
                return self._seen[1]
            self._seen = (changed, _monitoring_families(report) if report else [])
        return self._seen[1]


def _monitoring_families(report: dict[str, Any]) -> list[GaugeMetricFamily]:
    import pandas as pd

    judged = [
        w for w in report.get("windows") or [] if w.get("drift") or w.get("realized")
    ]  # closed, big enough
    as_of = GaugeMetricFamily(
        "keel_monitoring_as_of_seconds", "As-of time of the latest keel monitor run (Unix)"
    )
    as_of.add_metric([], pd.Timestamp(report["as_of"]).timestamp())
    psi = GaugeMetricFamily(
        "keel_drift_psi", "PSI per input against training, newest judged window", labels=["feature"]
    )
    drifted = GaugeMetricFamily(
        "keel_drift_drifted",
        "1 when the input drifted in the newest judged window",
        labels=["feature"],
    )
    newest = judged[-1] if judged else {}
    for feature in (newest.get("drift") or {}).get("features", []):
        psi.add_metric([feature["name"]], feature["psi"])
        drifted.add_metric([feature["name"]], float(feature["drifted"]))
    alerts = GaugeMetricFamily(
        "keel_monitoring_alerts", "Alerts in the newest judged window", labels=["severity"]
    )
    for severity in ("warn", "alert"):
        alerts.add_metric(
            [severity], sum(a["severity"] == severity for a in newest.get("alerts", []))
        )
    auc = GaugeMetricFamily(
        "keel_auc", "AUC of the newest judged window that has one", labels=["kind"]
    )
    for kind in ("estimated", "realized"):
        values = [w[kind]["auc"] for w in judged if w.get(kind) and w[kind].get("auc") is not None]
        if values:
            auc.add_metric([kind], values[-1])
    return [as_of, psi, drifted, alerts, auc]


class Metrics:
    """The process's counters; route labels are the known routes or ``other`` (bounded cardinality).

    With ``monitoring_file``, every scrape also shows the latest monitoring run's gauges.
    """

    def __init__(self, monitoring_file: Path | None = None) -> None:
        self.registry = CollectorRegistry()
        self.monitoring = MonitoringGauges(monitoring_file) if monitoring_file else None
        if self.monitoring:
            self.registry.register(self.monitoring)
        self.requests = Counter(
            "keel_requests", "Answered requests", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "keel_request_seconds",
            "Time to answer",
            ["route"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.scores = Histogram(
            "keel_score",
            "Probabilities given",
            registry=self.registry,
            buckets=tuple(i / 10 for i in range(1, 11)),
        )
        self.version = Gauge(
            "keel_model_version",
            "Version being served",
            ["model"],
            registry=self.registry,
            multiprocess_mode="liveall",
        )
        self.in_flight = Gauge(
            "keel_in_flight",
            "Scoring requests being answered",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.shed = Counter(
            "keel_shed",
            "Requests refused to protect the server",
            ["reason"],
            registry=self.registry,
        )
        self.shadow = Counter(
            "keel_shadow", "Shadow scorings by outcome", ["outcome"], registry=self.registry
        )
        self.shadow_version = Gauge(
            "keel_shadow_version",
            "Challenger version scoring in the shadow (0: none)",
            registry=self.registry,
            multiprocess_mode="liveall",
        )
        self.alias_mismatch = Gauge(
            "keel_alias_mismatch",
            "MLflow alias version where it disagrees with the "
            "audit log (0: they agree); the audited version keeps serving",
            ["alias"],
            registry=self.registry,
            multiprocess_mode="liveall",
        )

    @staticmethod
    def route(path: str) -> str:
        """The label for a request path."""
        return path if path in ROUTES else "other"

    def exposition(self) -> bytes:
        """The text a scrape gets: this process's metrics, or all workers' in multiprocess mode."""
        if os.environ.get(MULTIPROCESS_DIR):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            if self.monitoring:
                registry.register(self.monitoring)
            return generate_latest(registry)
        return generate_latest(self.registry)


def process_ended() -> None:
    """Drop this worker's live gauges from the shared files (multiprocess mode only)."""
    if os.environ.get(MULTIPROCESS_DIR):
        multiprocess.mark_process_dead(os.getpid())
