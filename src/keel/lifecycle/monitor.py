"""A monitoring run over a served model: events and labels in; report, alerts, ``latest.json`` out.

``keel monitor`` is this flow behind a command line. It judges the events the prediction log
(or a scored table) holds against the baseline of the version the audit log names, joins the
labels that have arrived, writes the HTML report and ``alerts.jsonl``, moves the champion's
``latest.json`` forward to the data it judged, and posts the new alerts to the spec's webhook.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from keel.errors import SpecError
from keel.io.files import write_text_atomic
from keel.lifecycle.alerts import alert_lines, send_webhook
from keel.monitoring.events import (
    attach_labels,
    events_from_answers,
    events_from_table,
    labels_from_posts,
    labels_from_table,
)
from keel.monitoring.latest import advance_latest, judged_through, latest_path
from keel.monitoring.monitor import Alert, MonitorReport, monitor
from keel.registry.governance import Governance
from keel.reports.monitoring import write_monitoring_report
from keel.serving.loader import required_version
from keel.serving.predictions import read_answers, read_labels
from keel.spec import MonitoringSpec, ProjectSpec


@dataclass(frozen=True)
class Sources:
    """Where events and labels come from; by default the prediction log and its posted labels."""

    log: Path | None = None  # default: predictions.db in the project folder
    scored: str | None = None  # a scored table (keel score output, inputs kept) instead of the log
    labels: str | None = None  # a labels file: the id column and the target
    label_time_column: str | None = None  # its column saying when each label became known
    join_on: str | None = (
        None  # the column joining labels to events [default: the data's id column]
    )


@dataclass(frozen=True)
class MonitorRun:
    """What one run found and wrote."""

    report: MonitorReport
    new: list[Alert]  # alerts of windows that closed since the previous run (or ``since``)
    lines: list[str]  # those alerts as JSON lines, as written to alerts.jsonl
    html: Path
    undelivered: str | None  # why the webhook did not take the alerts, when it did not

    @property
    def alerted(self) -> bool:
        """Whether a new alert (not only a warning) was raised."""
        return any(a.severity == "alert" for a in self.new)


def monitor_model(
    governance: Governance,
    project_dir: Path,
    name: str,
    *,
    spec: ProjectSpec | None = None,
    alias: str = "champion",
    sources: Sources = Sources(),
    as_of: pd.Timestamp | None = None,
    since: pd.Timestamp | None = None,
    partial: bool = False,
    out_dir: Path | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_window: Callable[[int, int], None] | None = None,
) -> MonitorRun:
    """Judge ``name``'s ``alias`` (per the audit log) on its events; write the report and alerts.

    Only the champion's run moves ``latest.json`` (what ``/metrics`` and the console show).
    ``on_stage`` hears each stage; ``on_window(done, total)`` each window judged.
    """
    stage = on_stage or (lambda _: None)
    version = required_version(governance, name, alias)
    served, _ = governance.registry.load_model(name, version)
    described = served.metadata.get("features") or {}
    time_column = described.get("time_column") or (spec.data.time_column if spec else None)
    id_column = described.get("id_column") or (spec.data.id_column if spec else None)
    log = sources.log or project_dir / "predictions.db"
    stage(f"reading the events of {name} v{version} from {sources.scored or log}")
    if sources.scored:
        if not time_column:
            raise SpecError("a scored table needs the spec's data.time_column (give --spec)")
        events = events_from_table(sources.scored, time_column=time_column)
    else:
        events = events_from_answers(
            read_answers(log, name), model=name, where=str(log), time_column=time_column
        )
    if sources.labels or (not sources.scored and described):
        key = sources.join_on or id_column
        if not key:
            raise SpecError("labels are joined by the spec's data.id_column; give --spec")
        found = (
            labels_from_table(
                sources.labels,
                id_column=key,
                target=served.target,
                time_column=sources.label_time_column,
            )
            if sources.labels
            else labels_from_posts(read_labels(log), id_column=key, target=served.target)
        )
        events = attach_labels(events, found, id_column=key, positive=served.positive)
    if id_column and id_column in events.columns:  # a retried request is logged again: once
        events = events.drop_duplicates(id_column, keep="last")
    stage(f"judging {len(events):,} events")
    report = monitor(
        events,
        served,
        spec.monitoring if spec else MonitoringSpec(),
        name=name,
        as_of=as_of,
        partial=partial,
        protected=spec.protected if spec else [],
        fairness=spec.fairness if spec else None,
        on_window=on_window,
    )
    stage("writing the report")
    latest = latest_path(project_dir, name)
    new = report.alerts_since(since if since is not None else judged_through(latest))
    target = out_dir or project_dir / "monitoring" / name / pd.Timestamp(report.as_of).strftime(
        "%Y-%m-%dT%H%M%S"
    )
    written = report.to_dict()
    html, _ = write_monitoring_report(written, target)
    lines = alert_lines(new, model=name, as_of=report.as_of)
    write_text_atomic(target / "alerts.jsonl", "".join(line + "\n" for line in lines))
    if alias == "champion":  # the data judged, never a future as-of: the next run starts there
        advance_latest(latest, written, report.judged_through())
    undelivered = (
        send_webhook(new, spec.monitoring.alerts, model=name, as_of=report.as_of) if spec else None
    )
    return MonitorRun(report, new, lines, html, undelivered)
