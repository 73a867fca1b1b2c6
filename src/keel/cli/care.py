"""``keel monitor`` and ``keel retrain``: production care, as thin commands over keel.lifecycle."""

from __future__ import annotations

import json
from contextlib import suppress
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from keel.cli.common import (
    DEFAULT_AUTHOR,
    AuthorOpt,
    ModelOpt,
    ProjectDirOpt,
    SpecArg,
    SpecOpt,
    UriOpt,
    _keel_errors,
    _load,
    _principal,
    _project,
    _project_dir,
    _quiet_libraries,
    app,
    err,
    out,
)

ALERT_EXIT = 13  # a monitoring pass raised at least one alert


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _windows_table(report: Any) -> Table:
    every = {"day": "daily", "week": "weekly", "month": "monthly"}[report.window]
    table = Table(title=f"{report.model}: {every} windows to {report.as_of}")
    for column in (
        "window",
        "rows",
        "labelled",
        "AUC estimated",
        "AUC realized",
        "drift",
        "drifted",
        "alerts",
    ):
        table.add_column(column, justify="left" if column in ("window", "drift") else "right")
    for w in report.windows:
        drifted = sum(f.drifted for f in w.drift.features) if w.drift else 0
        table.add_row(
            w.window,
            f"{w.rows:,}",
            f"{w.labelled:,}",
            _num(w.estimated.auc),
            _num(w.realized.auc if w.realized else None),
            w.drift.level if w.drift else "not judged",
            str(drifted),
            str(len(w.alerts)),
        )
    return table


@app.command()
def monitor(
    spec: SpecOpt = None,
    project_dir: ProjectDirOpt = None,
    tracking_uri: UriOpt = None,
    model: ModelOpt = None,
    alias: Annotated[
        str, typer.Option(help="Registry alias whose baseline the events are judged against.")
    ] = "champion",
    log: Annotated[
        Path | None,
        typer.Option(help="Prediction log [default: predictions.db in the project folder]."),
    ] = None,
    scored: Annotated[
        str | None,
        typer.Option(help="A scored table (keel score output, inputs kept) instead of the log."),
    ] = None,
    labels: Annotated[
        str | None, typer.Option(help="Labels file (CSV/Parquet): the id column and the target.")
    ] = None,
    label_time_column: Annotated[
        str | None, typer.Option(help="Column of --labels saying when each label became known.")
    ] = None,
    join_on: Annotated[
        str | None,
        typer.Option(
            help="Column joining --labels to the events: request_id (and row) from the log "
            "[default: the spec's data.id_column]."
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            help="Judge as of this time, ISO 8601 (no offset: UTC) [default: the newest event]."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Alert only on windows that closed after this time "
            "[default: the previous run's as-of]."
        ),
    ] = None,
    partial: Annotated[
        bool, typer.Option(help="Also judge the window still open at the as-of time.")
    ] = False,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Report folder [default: monitoring/<model>/<as-of> in the project folder].",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole report as JSON instead of a table.")
    ] = False,
    retrain_on_alert: Annotated[
        bool, typer.Option(help="On an alert, run keel retrain with --spec.")
    ] = False,
    author: AuthorOpt = DEFAULT_AUTHOR,
) -> None:
    """Drift, label-free and realized performance, and fairness per time window; alerts exit 13.

    Windows are judged once closed. Alerts of windows that closed since the previous run (or
    --since) are printed as JSON lines, written to alerts.jsonl beside the HTML report, and
    sent to the spec's webhook when one is configured (monitoring.alerts); the report shows all.
    """
    from rich.progress import Progress

    from keel.io.times import as_of_time
    from keel.lifecycle.monitor import Sources, monitor_model

    _quiet_libraries()
    with _keel_errors():
        if retrain_on_alert and spec is None:
            raise typer.BadParameter(
                "--retrain-on-alert needs --spec, the spec to retrain", param_hint="--spec"
            )
        project = _load(spec) if spec else None
        if retrain_on_alert and project and project.split.method not in ("time", "delayed"):
            raise typer.BadParameter(
                f"keel retrain needs a time split; the spec's split.method is "
                f"'{project.split.method}'",
                param_hint="--retrain-on-alert",
            )
        store = _project(spec, project_dir, tracking_uri)
        name = model or store.model
        if not name:
            raise typer.BadParameter("give --model or --spec", param_hint="--model")
        with Progress(console=err, transient=True) as progress:
            windows = progress.add_task("judging windows", total=None)
            run = monitor_model(
                store.governance(writer=False),
                store.folder,
                name,
                spec=project,
                alias=alias,
                sources=Sources(log, scored, labels, label_time_column, join_on),
                as_of=as_of_time(as_of) if as_of else None,
                since=as_of_time(since) if since else None,
                partial=partial,
                out_dir=out_dir,
                on_stage=lambda text: progress.console.print(f"[dim]{text}[/]", highlight=False),
                on_window=lambda done, total: progress.update(windows, completed=done, total=total),
            )
    if as_json:
        out.print_json(json.dumps(run.report.to_dict(), default=str))
    else:
        out.print(_windows_table(run.report))
        for line in run.lines:
            out.print(line, markup=False, highlight=False, soft_wrap=True)
        out.print(f"report: {run.html}")
    if run.undelivered:
        err.print(f"[yellow]alerts not delivered[/]: {run.undelivered}")
    if not run.alerted:
        return
    if retrain_on_alert and spec is not None:
        err.print("alerts raised: retraining")
        with suppress(typer.Exit):  # the retrain's error is printed; the alert stays the exit code
            _retrain(spec, project_dir, author, None, with_card=True, quiet=True)
    raise typer.Exit(ALERT_EXIT)


@app.command()
def retrain(
    spec_path: SpecArg,
    project_dir: ProjectDirOpt = None,
    author: AuthorOpt = DEFAULT_AUTHOR,
    as_of: Annotated[
        str | None,
        typer.Option(help="Use the data known before this time [default: all of it]."),
    ] = None,
    card: Annotated[bool, typer.Option(help="Write the challenger's model card.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Train a challenger on the newest window and compare it with the champion on the same rows.

    The policy's decision (promoted, awaiting approval, refused) is printed and audited;
    each exits 0.
    """
    _quiet_libraries()
    _retrain(spec_path, project_dir, author, as_of, with_card=card, quiet=quiet)


def _retrain(
    spec_path: Path,
    project_dir: Path | None,
    author: str,
    as_of: str | None,
    *,
    with_card: bool,
    quiet: bool,
) -> None:
    import pandas as pd

    from keel.lifecycle.retrain import retrain as run_retrain

    with _keel_errors():
        spec = _load(spec_path)
        folder = _project_dir(spec_path, project_dir)
        result = run_retrain(
            spec,
            project_dir=folder,
            author=author,
            principal=_principal(spec, folder),
            as_of=pd.Timestamp(as_of) if as_of else None,
            with_card=with_card,
            on_stage=None if quiet else (lambda text: err.print(f"[dim]{text}[/]")),
        )
    colour = {"promoted": "green", "awaiting approval": "yellow", "refused": "red"}[result.decision]
    out.print(
        f"challenger {result.run.model_name} v{result.challenger_version} against champion "
        f"v{result.champion_version} on {result.window['rows']:,} rows: "
        f"[bold {colour}]{result.decision}[/]"
    )
    for reason in result.reasons:
        out.print(f"  {reason}", markup=False, highlight=False)
