"""``keel monitor`` and ``keel retrain``: production care, as thin commands over keel.monitoring and keel.lifecycle."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from keel.cli.main import (
    AuthorOpt,
    ModelOpt,
    ProjectDirOpt,
    SpecArg,
    SpecOpt,
    UriOpt,
    _governance,
    _keel_errors,
    _load,
    _principal,
    _project_dir,
    _quiet_libraries,
    _store,
    app,
    err,
    out,
)
from keel.io.files import write_text_atomic

ALERT_EXIT = 13  # a monitoring pass raised at least one alert


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _windows_table(report: Any) -> Table:
    every = {"day": "daily", "week": "weekly", "month": "monthly"}[report.window]
    table = Table(title=f"{report.model}: {every} windows to {report.as_of}")
    for column in ("window", "rows", "labelled", "AUC estimated", "AUC realized", "drift", "drifted", "alerts"):
        table.add_column(column, justify="left" if column in ("window", "drift") else "right")
    for w in report.windows:
        drifted = sum(f.drifted for f in w.drift.features) if w.drift else 0
        table.add_row(w.window, f"{w.rows:,}", f"{w.labelled:,}", _num(w.estimated.auc),
                      _num(w.realized.auc if w.realized else None), w.drift.level if w.drift else "not judged",
                      str(drifted), str(len(w.alerts)))
    return table


@app.command()
def monitor(
    spec: SpecOpt = None, project_dir: ProjectDirOpt = None, tracking_uri: UriOpt = None, model: ModelOpt = None,
    alias: Annotated[str, typer.Option(help="Registry alias whose baseline the events are judged against.")] = "champion",
    log: Annotated[Optional[Path], typer.Option(help="Prediction log [default: predictions.db in the project folder].")] = None,
    scored: Annotated[Optional[str], typer.Option(help="A scored table (keel score output, inputs kept) instead of the log.")] = None,
    labels: Annotated[Optional[str], typer.Option(help="Labels file (CSV/Parquet): the id column and the target.")] = None,
    label_time_column: Annotated[Optional[str], typer.Option(help="Column of --labels saying when each label became known.")] = None,
    join_on: Annotated[Optional[str], typer.Option(help="Column joining --labels to the events: request_id (and row) from the log [default: the spec's data.id_column].")] = None,
    as_of: Annotated[Optional[str], typer.Option(help="Judge as of this time, ISO 8601 (no offset: UTC) [default: the newest event].")] = None,
    since: Annotated[Optional[str], typer.Option(help="Alert only on windows that closed after this time [default: the previous run's as-of].")] = None,
    partial: Annotated[bool, typer.Option(help="Also judge the window still open at the as-of time.")] = False,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Report folder [default: monitoring/<model>/<as-of> in the project folder].")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole report as JSON instead of a table.")] = False,
    retrain_on_alert: Annotated[bool, typer.Option(help="On an alert, run keel retrain with --spec.")] = False,
    author: AuthorOpt = getpass.getuser(),
) -> None:
    """Drift, label-free and realized performance, and fairness per time window; alerts exit with code 13.

    Windows are judged once closed. Alerts of windows that closed since the previous run (or
    --since) are printed as JSON lines, written to alerts.jsonl beside the HTML report, and
    sent to the spec's webhook when one is configured (monitoring.alerts); the report shows all.
    """
    import pandas as pd

    from keel.io.times import as_of_time
    from keel.monitoring.alerts import alert_lines, send_webhook
    from keel.monitoring.events import (
        attach_labels,
        events_from_log,
        events_from_table,
        labels_from_log,
        labels_from_table,
    )
    from keel.monitoring.monitor import monitor as run_monitor
    from keel.reports.monitoring import write_monitoring_report
    from keel.serving.loader import audited_version
    from keel.spec import MonitoringSpec

    _quiet_libraries()
    with _keel_errors():
        if retrain_on_alert and spec is None:
            raise typer.BadParameter("--retrain-on-alert needs --spec, the spec to retrain", param_hint="--spec")
        project = _load(spec) if spec else None
        if retrain_on_alert and project and project.split.method not in ("time", "delayed"):
            raise typer.BadParameter(f"keel retrain needs a time split; the spec's split.method is "
                                     f"'{project.split.method}'", param_hint="--retrain-on-alert")
        folder, uri, name = _store(spec, project_dir, tracking_uri)
        name = model or name
        if not name:
            raise typer.BadParameter("give --model or --spec", param_hint="--model")
        governance = _governance(spec, project_dir, writer=False)[0]
        version = audited_version(governance, name, alias)
        if version is None:
            raise typer.BadParameter(f"the audit log gives model '{name}' no {alias}", param_hint="--alias")
        registry = governance.registry
        served, info = registry.load_model(name, version)
        described = served.metadata.get("features") or {}
        time_column = described.get("time_column") or (project.data.time_column if project else None)
        id_column = described.get("id_column") or (project.data.id_column if project else None)
        log_path = log or folder / "predictions.db"
        if scored:
            if not time_column:
                raise typer.BadParameter("a scored table needs the spec's data.time_column", param_hint="--scored")
            events = events_from_table(scored, time_column=time_column)
        else:
            events = events_from_log(log_path, model=name, time_column=time_column)
        if labels or (not scored and described):
            key = join_on or id_column
            if not key:
                raise typer.BadParameter("labels are joined by the spec's data.id_column; give --spec", param_hint="--labels")
            found = (labels_from_table(labels, id_column=key, target=served.target, time_column=label_time_column)
                     if labels else labels_from_log(log_path, id_column=key, target=served.target))
            events = attach_labels(events, found, id_column=key, positive=served.positive)
        if id_column and id_column in events.columns:  # a retried request is logged again: count it once
            events = events.drop_duplicates(id_column, keep="last")
        report = run_monitor(events, served, project.monitoring if project else MonitoringSpec(), name=name,
                             as_of=as_of_time(as_of) if as_of else None, partial=partial,
                             protected=project.protected if project else [],
                             fairness=project.fairness if project else None)
        latest = folder / "monitoring" / name / "latest.json"
        previous = _seen_through(latest)
        through = report.judged_through()  # never a future --as-of: the close of the newest window with data
        new = report.alerts_since(as_of_time(since) if since else previous)
        target = out_dir or folder / "monitoring" / name / pd.Timestamp(report.as_of).strftime("%Y-%m-%dT%H%M%S")
        written = report.to_dict()
        html, _ = write_monitoring_report(written, target)
        lines = alert_lines(new, model=name, as_of=report.as_of)
        write_text_atomic(target / "alerts.jsonl", "".join(line + "\n" for line in lines))
        if alias == "champion" and through is not None and (previous is None or through >= previous):
            # what /metrics shows, and how far the next run's news starts: the data judged, never a future --as-of
            write_text_atomic(latest, json.dumps({**written, "judged_through": str(through)}, default=str))
        undelivered = send_webhook(new, project.monitoring.alerts, model=name,
                                   as_of=report.as_of) if project else None
    if as_json:
        out.print_json(json.dumps(written, default=str))
    else:
        out.print(_windows_table(report))
        for line in lines:
            out.print(line, markup=False, highlight=False, soft_wrap=True)
        out.print(f"report: {html}")
    if undelivered:
        err.print(f"[yellow]alerts not delivered[/]: {undelivered}")
    if not any(a.severity == "alert" for a in new):
        return
    if retrain_on_alert and spec is not None:
        err.print("alerts raised: retraining")
        try:
            _retrain(spec, project_dir, author, None, with_card=True, quiet=True)
        except typer.Exit:  # the retrain's error is printed; the alert stays the exit code
            pass
    raise typer.Exit(ALERT_EXIT)


def _seen_through(latest: Path) -> Any:
    """How far the previous run judged (``judged_through``; older files: their as-of time), or None."""
    from keel.io.times import as_of_time

    if not latest.is_file():
        return None
    stored = json.loads(latest.read_text())
    seen = stored.get("judged_through") or stored.get("as_of")
    return as_of_time(seen) if seen else None


@app.command()
def retrain(
    spec_path: SpecArg, project_dir: ProjectDirOpt = None, author: AuthorOpt = getpass.getuser(),
    as_of: Annotated[Optional[str], typer.Option(help="Use the data known before this time [default: all of it].")] = None,
    card: Annotated[bool, typer.Option(help="Write the challenger's model card.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Train a challenger on the newest window, compare it with the champion on the same rows, apply the policy.

    The decision (promoted, awaiting approval, refused) is printed and audited; each exits 0.
    """
    _quiet_libraries()
    _retrain(spec_path, project_dir, author, as_of, with_card=card, quiet=quiet)


def _retrain(spec_path: Path, project_dir: Path | None, author: str, as_of: str | None, *, with_card: bool,
             quiet: bool) -> None:
    import pandas as pd

    from keel.lifecycle.retrain import retrain as run_retrain

    with _keel_errors():
        spec = _load(spec_path)
        folder = _project_dir(spec_path, project_dir)
        result = run_retrain(spec, project_dir=folder, author=author, principal=_principal(spec, folder),
                             as_of=pd.Timestamp(as_of) if as_of else None, with_card=with_card,
                             on_stage=None if quiet else (lambda text: err.print(f"[dim]{text}[/]")))
    colour = {"promoted": "green", "awaiting approval": "yellow", "refused": "red"}[result.decision]
    out.print(f"challenger {result.run.model_name} v{result.challenger_version} against champion "
              f"v{result.champion_version} on {result.window['rows']:,} rows: [bold {colour}]{result.decision}[/]")
    for reason in result.reasons:
        out.print(f"  {reason}", markup=False, highlight=False)
