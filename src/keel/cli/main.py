"""The ``keel`` command: thin commands over the public API, with progress and clear errors."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
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
    models_app,
    out,
)

REPO_EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "credit_default" / "keel.yaml"


@contextmanager
def _progress(
    spec: Any, quiet: bool
) -> Iterator[tuple[Callable[..., None], Callable[[str], None]]]:
    """Progress bars for tuning trials (one per family) and a line per stage."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("best {task.fields[best]}"),
        TimeElapsedColumn(),
        console=err,
        disable=quiet,
        transient=False,
    )
    tasks: dict[str, Any] = {}
    best: dict[str, float] = {}
    maximize = spec.tuning.maximize

    def on_trial(family: str, number: int, value: float | None) -> None:
        if family not in tasks:
            tasks[family] = progress.add_task(
                f"tuning {family}", total=spec.tuning.trials, best="-"
            )
        if value is not None and (family not in best or (value > best[family]) == maximize):
            best[family] = value
        progress.update(
            tasks[family], advance=1, best=f"{best[family]:.4f}" if family in best else "-"
        )

    def on_stage(text: str) -> None:
        if not quiet:
            progress.console.print(f"[cyan]>[/] {text}")

    with progress:
        yield on_trial, on_stage


def _metrics_table(metrics: dict[str, dict[str, float]]) -> Table:
    table = Table(title="Metrics", show_lines=False)
    table.add_column("metric")
    for part in metrics:
        table.add_column(part, justify="right")
    for name in ("auc", "gini", "ks", "average_precision", "brier", "log_loss", "ece"):
        table.add_row(name, *(f"{metrics[p][name]:.4f}" for p in metrics))
    return table


def _summary(result: Any) -> None:
    out.print(_metrics_table(result.metrics))
    out.print(
        f"Registered [bold]{result.model_name}[/] version [bold]{result.version}[/] "
        f"({result.family}), run {result.run_id}"
    )
    out.print(f"Test AUC: [bold]{result.metrics['test']['auc']:.4f}[/]")
    for gate in result.gates:
        state = {True: "[green]pass[/]", False: "[red]fail[/]", None: "not evaluated"}[
            gate["passed"]
        ]
        value = "-" if gate["value"] is None else f"{gate['value']:.4f}"
        out.print(f"  gate {gate['name']} {gate['threshold']}: {value} {state}")
    blocked = [g["name"] for g in result.gates if g["passed"] is not True]
    out.print(
        "State: "
        + (
            f"candidate - gates {', '.join(blocked)} block approval"
            if blocked
            else "validated - ready for an independent approval (keel approve)"
        )
    )
    if result.author_verified is False:
        out.print(
            "Author unverified (no KEEL_TOKEN): this version cannot be approved; run again with a "
            "developer's token to register an approvable one"
        )
    if result.card_html:
        out.print(f"Model card: {result.card_html}")
    out.print(f"MLflow UI: mlflow ui --backend-store-uri {result.tracking_uri}")


def _run(
    spec_path: Path,
    project_dir: Path | None,
    author: str,
    quiet: bool,
    with_card: bool,
    cluster: str | None = None,
) -> None:
    from keel.engine import open_engine
    from keel.engine.cluster import check_cluster
    from keel.lifecycle.run import run_project

    _quiet_libraries()
    with _keel_errors(report=_project_dir(spec_path, project_dir) / "contract_report.json"):
        spec = _load(spec_path)
        check_cluster(cluster)
        author, register = _registrar(author)
        principal = None if register else _principal(spec, _project_dir(spec_path, project_dir))
        with open_engine(cluster) as engine, _progress(spec, quiet) as (on_trial, on_stage):
            result = run_project(
                spec,
                project_dir=_project_dir(spec_path, project_dir),
                author=author,
                principal=principal,
                register=register,
                with_card=with_card,
                on_trial=on_trial,
                on_stage=on_stage,
                engine=engine,
            )
    _summary(result)


def _registrar(author: str) -> tuple[str, Any]:
    """With KEEL_SERVER: the signed-in user's name and a registration through the service.

    The sign-in is checked first, before any training.
    """
    server = os.environ.get("KEEL_SERVER")
    if not server:
        return author, None
    from keel.server.client import HttpClient

    client = HttpClient(server, os.environ.get("KEEL_TOKEN") or None)
    me = client.call("me")  # no or a bad token stops here, before any training

    def register(info: Any, **facts: Any) -> Any:
        return client.call("register", name=info.name, version=info.version, **facts)

    return me["name"], register


ClusterOpt = Annotated[
    str | None,
    typer.Option(
        help="Run the features and the tuning trials on Dask: 'local' (a cluster of worker "
        "processes here) or a scheduler address such as tcp://host:8786 "
        "[default: in this process]."
    ),
]


@app.command()
def run(
    spec_path: SpecArg,
    project_dir: ProjectDirOpt = None,
    author: AuthorOpt = DEFAULT_AUTHOR,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    cluster: ClusterOpt = None,
) -> None:
    """The full flow: contract, features, training, tuning, evaluation, registration, model card."""
    _run(spec_path, project_dir, author, quiet, with_card=True, cluster=cluster)


@app.command()
def train(
    spec_path: SpecArg,
    project_dir: ProjectDirOpt = None,
    author: AuthorOpt = DEFAULT_AUTHOR,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    cluster: ClusterOpt = None,
) -> None:
    """Contract, features, training and tuning, registration; no model card (see `keel run`)."""
    _run(spec_path, project_dir, author, quiet, with_card=False, cluster=cluster)


@app.command()
def validate(
    spec_path: SpecArg,
    report: Annotated[Path | None, typer.Option(help="Write the JSON report here.")] = None,
) -> None:
    """Check the spec and the data contract only; exit non-zero when either is broken."""
    from keel.lifecycle.run import prepare_data

    with _keel_errors(report=report):
        spec = _load(spec_path)
        data = prepare_data(spec)
    out.print(data.contract.summary())
    out.print(f"cleaning: {json.dumps(data.cleaning.to_dict())}")


CHECK_EXIT_CODES = """Exit codes: 0 every gate passed; 1 a gate failed or could not be evaluated;
2 the spec is invalid (or the command line); 3 the data cannot be read; 4 the data broke its
contract; 5 no model could be trained on the sample."""


@app.command(epilog=CHECK_EXIT_CODES)
def check(
    spec_path: SpecArg,
    sample_rows: Annotated[
        int, typer.Option(min=100, help="Rows to train and test on (a sample of the data).")
    ] = 20_000,
    trials: Annotated[
        int, typer.Option(min=1, help="Tuning trials per family at most (the spec's if fewer).")
    ] = 3,
    project_dir: ProjectDirOpt = None,
    report: Annotated[
        Path | None,
        typer.Option(help="Write the result (metrics, gates, contract) as JSON here."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """A quick pipeline check for CI: spec, contract, training on a sample, gates.

    The contract is checked on every row; the model is trained on a sample (stratified, or
    in time order for a time split) with few tuning trials, and the spec's gates are judged,
    tightened by the governance policy when the project has a governance store. Nothing is
    registered and no store is written; `keel run` makes the version.
    """
    from keel.io.files import write_text_atomic
    from keel.lifecycle.check import check_project

    _quiet_libraries()
    contract_report = report.with_suffix(".contract.json") if report else None
    with _keel_errors(report=contract_report):
        spec = _load(spec_path)
        result = check_project(
            spec,
            project_dir=_project_dir(spec_path, project_dir),
            sample=sample_rows,
            trials=trials,
            on_stage=None if quiet else lambda text: err.print(f"[cyan]>[/] {text}"),
        )
    if report is not None:
        write_text_atomic(report, json.dumps(result.to_dict(), indent=2, default=str))
    out.print(
        f"{spec.project}: contract passed on {result.rows} rows; {result.family} trained on "
        f"{result.sampled} rows with {result.trials} trial(s) per family"
    )
    out.print(_metrics_table(result.metrics))
    gates = Table(
        title="Gates ("
        + (
            "the spec's alone: no governance store"
            if result.policy_version is None
            else f"the spec's, tightened by policy v{result.policy_version}"
        )
        + ")"
    )
    for column in ("gate", "threshold", "value", "result"):
        gates.add_column(column)
    for gate in result.gates:
        gates.add_row(
            gate["name"],
            f"{gate['threshold']:g}",
            "-" if gate["value"] is None else f"{gate['value']:.4f}",
            {True: "[green]pass[/]", False: "[red]fail[/]", None: "[red]not evaluated[/]"}[
                gate["passed"]
            ],
        )
    out.print(gates)
    if not result.passed:
        failed = [g["name"] for g in result.gates if g["passed"] is not True]
        err.print(f"[bold red]check failed[/]: gates {', '.join(failed)} do not pass")
        raise typer.Exit(1)
    out.print("check passed: every gate passes on the sample")


@app.command()
def evaluate(
    spec_path: SpecArg,
    version: Annotated[str, typer.Option(help="Version number, or 'latest'.")] = "latest",
    data: Annotated[
        str | None,
        typer.Option(help="Labeled data to evaluate on [default: the version's test split]."),
    ] = None,
    project_dir: ProjectDirOpt = None,
) -> None:
    """Score a registered version (hash-checked) and print its metrics."""
    from keel.lifecycle.evaluate import evaluate_version

    _quiet_libraries()
    with _keel_errors():
        spec = _load(spec_path)
        result = evaluate_version(
            spec, project_dir=_project_dir(spec_path, project_dir), version=version, source=data
        )
    out.print(f"{result.model_name} version {result.version} on {result.data} ({result.rows} rows)")
    out.print(_metrics_table({"evaluated": result.metrics}))
    out.print(f"report: {result.report}")


@app.command()
def init(
    data: Annotated[str, typer.Argument(help="CSV or Parquet file (any fsspec URL) to profile.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the starter spec.")
    ] = Path("keel.yaml"),
    target: Annotated[str | None, typer.Option(help="The label column [default: guessed].")] = None,
    project: Annotated[
        str | None, typer.Option(help="Project name [default: from the file name].")
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing spec.")] = False,
    protected_words: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated words (or phrases) naming protected attributes; they replace "
            "the default list (age, sex, gender, race, ..., zip). A column whose name holds one "
            "goes under `protected:` and is never a feature."
        ),
    ] = None,
    calendar: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated calendar parts of the time column to derive as features "
            "(weekend, night, hour, day_of_week) [default: none]."
        ),
    ] = None,
) -> None:
    """Profile a dataset Keel has never seen and write a starter keel.yaml to review.

    The spec trains as it is; a version trained from it cannot be approved until a person
    has reviewed the spec and set `reviewed: true`.
    """
    import re

    from keel.contracts.profile import (
        DEFAULT_PROTECTED_WORDS,
        profile_table,
        render_spec_yaml,
        starter_spec,
    )
    from keel.io.files import write_text_atomic
    from keel.io.tables import read_table
    from keel.spec import DataSpec, parse_spec

    with _keel_errors():
        if output.exists() and not force:
            raise typer.BadParameter(
                f"{output} exists; pass --force to overwrite it", param_hint="--output"
            )
        fmt = DataSpec(source=data).file_format()
        table = read_table(data, fmt)
        profile = profile_table(table.frame)
        stem = (
            re.sub(r"[^A-Za-z0-9_.-]", "_", Path(data.split("?")[0]).name.split(".")[0])
            or "project"
        )
        name = project or (stem if stem[0].isalpha() else f"p_{stem}")
        is_local = "://" not in data
        source = str(Path(data).resolve()) if is_local else data
        if is_local:
            with suppress(ValueError):
                source = str(Path(data).resolve().relative_to(output.resolve().parent))
        words = _comma_list(protected_words, "--protected-words")
        spec = starter_spec(
            profile,
            source=source,
            project=name,
            target=target,
            protected_words=DEFAULT_PROTECTED_WORDS if words is None else words,
            calendar=_comma_list(calendar, "--calendar") or [],
        )
        parse_spec(spec, source=str(output), base_dir=output.resolve().parent)
        write_text_atomic(output, render_spec_yaml(spec, profile))
    summary = Table(title=f"{data}: {profile.rows} rows x {len(profile.columns)} columns")
    for column in ("column", "dtype", "missing", "distinct", "min", "max", "most frequent"):
        summary.add_column(column)
    for col in profile.columns:
        summary.add_row(
            col.name,
            col.dtype,
            f"{col.missing_rate:.1%}",
            str(col.n_unique),
            "-" if col.min is None else f"{col.min:g}",
            "-" if col.max is None else f"{col.max:g}",
            ", ".join(map(str, col.top_values[:3])),
        )
    out.print(summary)
    out.print(
        f"id candidates: {profile.id_candidates or 'none'}; target candidates: "
        f"{profile.target_candidates or 'none'}; "
        f"time candidates: {profile.time_candidates or 'none'}"
    )
    out.print(
        f"target: '{spec['target']['column']}' (positive class {spec['target']['positive']!r})"
    )
    out.print(
        f"protected: {spec['protected'] or 'none'}; "
        f"excluded from the features: {spec['features']['exclude'] or 'none'}"
    )
    out.print(
        f"wrote {output}; review it and set `reviewed: true` (until then a version trained "
        f"from it cannot be approved), then: keel run {output}"
    )


def _comma_list(text: str | None, option: str) -> list[str] | None:
    """The comma-separated items of an option (None when it was not given)."""
    if text is None:
        return None
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise typer.BadParameter("give at least one comma-separated item", param_hint=option)
    return items


@models_app.command("list")
def models_list(
    spec: SpecOpt = None, project_dir: ProjectDirOpt = None, tracking_uri: UriOpt = None
) -> None:
    """Every registered model with its versions, test AUC and data hash."""
    import datetime as dt

    _quiet_libraries()
    with _keel_errors():
        store = _project(spec, project_dir, tracking_uri)
        registry, only = store.registry(), store.model
        names = [only] if only else registry.model_names()
        table = Table(title=f"Models in {registry.tracking_uri}")
        for column in (
            "model",
            "version",
            "family",
            "test AUC",
            "author",
            "created (UTC)",
            "data sha256",
        ):
            table.add_column(column)
        for name in names:
            for v in registry.versions(name):
                created = dt.datetime.fromtimestamp(v.created_ms / 1000, dt.UTC).strftime(
                    "%Y-%m-%d %H:%M"
                )
                table.add_row(
                    name,
                    str(v.version),
                    v.tag("family", "-"),
                    v.tag("test_auc", "-"),
                    v.tag("author", "-"),
                    created,
                    (v.tag("data_sha256") or "-")[:12],
                )
    out.print(table)


@models_app.command("show")
def models_show(
    name: Annotated[str | None, typer.Argument(help="Model name [default: the spec's].")] = None,
    version: Annotated[str, typer.Argument(help="Version number or 'latest'.")] = "latest",
    spec: SpecOpt = None,
    project_dir: ProjectDirOpt = None,
    tracking_uri: UriOpt = None,
) -> None:
    """One version: its tags, run, source and whether its files still match their hashes."""
    from keel.errors import IntegrityError

    _quiet_libraries()
    with _keel_errors():
        store = _project(spec, project_dir, tracking_uri)
        registry, name = store.registry(), name or store.model
        if not name:
            raise typer.BadParameter("give a model name or --spec", param_hint="NAME")
        info = registry.version(name, version)
        try:
            model, _ = registry.load_model(name, info.version)
            integrity = f"ok ({model.family}, {len(model.features)} features)"
        except IntegrityError as error:
            integrity = f"FAILED: {error}"
    out.print_json(json.dumps({**info.__dict__, "integrity": integrity}, default=str))


@models_app.command("history")
def models_history(
    name: Annotated[str | None, typer.Argument(help="Model name [default: the spec's].")] = None,
    spec: SpecOpt = None,
    project_dir: ProjectDirOpt = None,
) -> None:
    """Every audited transition of a model's versions."""
    _quiet_libraries()
    with _keel_errors():
        store = _project(spec, project_dir)
        name = name or store.model or ""
        rows = store.governance().history(name)
    table = Table(title=f"History of {name}")
    for column in ("#", "time (UTC)", "actor", "action", "version", "before", "after", "reason"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row.seq),
            row.time[:19],
            _who(row),
            row.action,
            row.object,
            row.before,
            row.after,
            row.reason,
        )
    out.print(table)


def _who(row: Any) -> str:
    """The display name an audit row records for its actor, with the stable actor id."""
    from keel.registry.states import fields_of

    after = fields_of(row.after)
    name = after.get("by") or (after.get("author") or {}).get("name")
    return f"{name} ({row.actor})" if name else row.actor


@app.command()
def card(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version number or 'latest'.")],
    spec: SpecOpt = None,
    project_dir: ProjectDirOpt = None,
) -> None:
    """Re-render a version's model card with its current state and approval history.

    No retraining.
    """
    from keel.lifecycle.card_refresh import refresh_card

    _quiet_libraries()
    with _keel_errors():
        store = _project(spec, project_dir)
        path = refresh_card(store.folder, name, version, governance=store.governance())
    out.print(f"model card: {path}")


@app.command()
def score(
    input_url: Annotated[
        str, typer.Option("--input", help="CSV or Parquet file (any fsspec URL).")
    ],
    output_url: Annotated[
        str, typer.Option("--output", help="Parquet file to write (any fsspec URL).")
    ],
    spec: SpecOpt = None,
    project_dir: ProjectDirOpt = None,
    tracking_uri: UriOpt = None,
    model: ModelOpt = None,
    keep: Annotated[
        list[str] | None, typer.Option(help="Input column to copy to the output (repeat).")
    ] = None,
    reasons: Annotated[bool, typer.Option(help="Add the top-k reasons (JSON) per row.")] = True,
    chunk_rows: Annotated[
        int, typer.Option(min=1, help="Rows scored at a time (bounds memory).")
    ] = 50_000,
    cluster: Annotated[
        str | None,
        typer.Option(
            help="Score on Dask ('local' or tcp://host:8786): Parquet in, a folder of Parquet "
            "parts out; the spec's window and calendar features are computed on the cluster "
            "first."
        ),
    ] = None,
) -> None:
    """Score a file in chunks with the same engine as the API.

    The output appears only when complete.
    """
    import resource

    from rich.progress import Progress

    from keel.engine import open_engine
    from keel.engine.cluster import check_cluster
    from keel.serving.batch import score_file
    from keel.serving.distributed import score_on_cluster
    from keel.serving.loader import load_alias

    _quiet_libraries()
    with _keel_errors():
        store = _project(spec, project_dir, tracking_uri)
        name = model or store.model
        if not name:
            raise typer.BadParameter("give --model or --spec", param_hint="--model")
        engine = load_alias(store.governance(writer=False), name)
        if check_cluster(cluster):
            with open_engine(cluster) as dask:
                rows = score_on_cluster(
                    engine,
                    dask,
                    input_url,
                    output_url,
                    spec=_load(spec) if spec else None,
                    keep=keep,
                    reasons=reasons,
                )
            out.print(
                f"scored {rows} rows with {engine.name} version {engine.version} on {dask.address} "
                f"into {output_url}"
            )
            return
        with Progress(console=err, transient=True) as progress:
            task = progress.add_task(f"scoring with {engine.name} v{engine.version}", total=None)
            rows = score_file(
                engine,
                input_url,
                output_url,
                keep=keep,
                reasons=reasons,
                chunk_rows=chunk_rows,
                on_chunk=lambda n: progress.advance(task, n),
            )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.print(
        f"scored {rows} rows with {engine.name} version {engine.version} into {output_url} "
        f"(peak RSS {peak_mb:.0f} MB)"
    )


@app.command()
def serve(
    spec: SpecOpt = None,
    project_dir: ProjectDirOpt = None,
    tracking_uri: UriOpt = None,
    model: ModelOpt = None,
    host: Annotated[
        str, typer.Option(help="Address to bind; loopback unless told otherwise.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    max_batch: Annotated[
        int, typer.Option(min=1, help="Most records in one batch request.")
    ] = 1000,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            help="Host header allowed (repeat) "
            "[default: the bind address; any when bound to 0.0.0.0]."
        ),
    ] = None,
    watch_seconds: Annotated[
        float,
        typer.Option(min=0, help="Check the aliases this often; 0: reload by admin call only."),
    ] = 5.0,
    shadow_alias: Annotated[
        str,
        typer.Option(help="'challenger' (the audit log's) is scored in the shadow; '' for none."),
    ] = "challenger",
    drain_seconds: Annotated[
        float, typer.Option(min=0, help="After SIGTERM, /readyz is 503 this long before stopping.")
    ] = 5.0,
    request_timeout: Annotated[
        float, typer.Option(min=0.001, help="Seconds before a request is answered 503.")
    ] = 10.0,
    max_in_flight: Annotated[
        int, typer.Option(min=1, help="Scoring requests per worker beyond which it sheds (503).")
    ] = 256,
    max_per_client: Annotated[
        int,
        typer.Option(
            min=0,
            help="Requests open from one client address per worker beyond which it gets 503; "
            "0: no cap (behind a proxy every client has the proxy's address).",
        ),
    ] = 64,
    body_timeout: Annotated[
        float, typer.Option(min=0.001, help="Seconds to receive a whole request body (408).")
    ] = 10.0,
    header_timeout: Annotated[
        float, typer.Option(min=0.001, help="Seconds to receive a request's headers (408).")
    ] = 10.0,
    max_header_bytes: Annotated[
        int, typer.Option(min=1024, help="Most bytes of request line and headers (431).")
    ] = 32768,
    max_headers: Annotated[
        int, typer.Option(min=1, help="Most header fields in a request (431).")
    ] = 100,
    feature_store: Annotated[
        str | None,
        typer.Option(
            help="Where online window features keep events: redis://host:port/db "
            "(needed with several workers); default: in the worker's memory."
        ),
    ] = None,
) -> None:
    """Serve the champion via HTTP: /v1/score, /v1/score/batch, /livez, /readyz, /metrics, /admin/*.

    A model with window features takes raw transactions and computes its features online;
    POST /v1/labels stores labels as they arrive. Admin routes (reload, shadow on/off) and
    labels need the API key from the KEEL_API_KEY environment variable.
    """
    import uvicorn

    from keel.features.stores import open_store
    from keel.serving.server import ServeSettings, default_allowed_hosts
    from keel.web.protocol import HeadLimits, LimitedHttpTools

    _quiet_libraries()
    with _keel_errors():
        store = _project(spec, project_dir, tracking_uri)
        name = model or store.model
        if not name:
            raise typer.BadParameter("give --model or --spec", param_hint="--model")
        folder = store.folder
        ServeSettings(
            str(folder.resolve()),
            store.tracking_uri,
            name,
            max_batch=max_batch,
            allowed_hosts=allowed_host or default_allowed_hosts(host),
            governance_uri=store.governance_uri,
            checkpoints=store.checkpoints,
            watch_seconds=watch_seconds,
            shadow_alias=shadow_alias or None,
            drain_seconds=drain_seconds,
            request_timeout=request_timeout,
            max_in_flight=max_in_flight,
            max_per_client=max_per_client,
            body_timeout=body_timeout,
            feature_store=feature_store,
        ).export()
        HeadLimits(max_header_bytes, max_headers, header_timeout).export()
        open_store(feature_store)  # a bad URL stops here, before any worker starts
        if workers > 1 and feature_store in (None, "", "memory://"):
            _refuse_private_events(store.governance(writer=False), name)
    if (
        workers > 1
    ):  # one /metrics for all workers: each writes its numbers to a shared folder, wiped per start
        import shutil

        from keel.serving.metrics import MULTIPROCESS_DIR

        shared = folder.resolve() / "metrics" / str(port)
        shutil.rmtree(shared, ignore_errors=True)
        shared.mkdir(parents=True)
        os.environ[MULTIPROCESS_DIR] = str(shared)
    uvicorn.run(
        "keel.serving.server:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http=LimitedHttpTools,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=30,
    )


def _refuse_private_events(governance: Any, name: str) -> None:
    """Several workers each keeping their own events would each see part of a card's history."""
    from keel.errors import SpecError
    from keel.serving.loader import audited_version

    version = audited_version(governance, name)
    if version is not None and (
        governance.registry.load_model(name, version)[0].metadata.get("features") or {}
    ).get("windows"):
        raise SpecError(
            f"{name}'s champion computes window features online; with several workers they "
            "must share their events: give --feature-store redis://host:port/db, or serve with "
            "--workers 1"
        )


@app.command()
def demo(
    project_dir: ProjectDirOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Run the credit-default example end to end and print where everything went."""
    spec_path = Path("examples/credit_default/keel.yaml")
    if not spec_path.is_file():
        spec_path = REPO_EXAMPLE
    if not spec_path.is_file():
        err.print(f"the credit example is not at {spec_path}; run `keel demo` from a Keel checkout")
        raise typer.Exit(2)
    out.print(f"Keel demo: {spec_path}")
    _run(spec_path, project_dir, "keel-demo", quiet, with_card=True)


export_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Export a governed version for other serving stacks.",
)
app.add_typer(export_app, name="export")


@export_app.command("mlflow")
def export_mlflow(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version number or 'latest'.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder to create (must not exist).")
    ],
    spec: SpecOpt = None,
    project_dir: ProjectDirOpt = None,
    tracking_uri: UriOpt = None,
    author: AuthorOpt = DEFAULT_AUTHOR,
) -> None:
    """Write a version as a pickle-free MLflow pyfunc ("models from code") and audit the export.

    Only a version a second person approved (approved, champion or retired in the audit log)
    is exported. Its files are hash-checked before they are copied, and the exported model
    checks them again on every load; it returns probability, decision and reasons as
    `keel score` does. Load it with mlflow.pyfunc.load_model(DIR) or serve it with
    `mlflow models serve -m DIR --env-manager local`. The export is recorded in the audit
    log under the owner of KEEL_TOKEN, else under --author, unverified.
    """
    from keel.export.mlflow_model import export_mlflow as export

    _quiet_libraries()
    with _keel_errors():
        store = _project(spec, project_dir, tracking_uri)
        principal = _principal(_load(spec) if spec else None, store.folder)
        result = export(
            store.governance(),
            name,
            version,
            output,
            actor=principal.actor if principal else f"unverified:{author}",
            by=principal.name if principal else author,
        )
    out.print(
        f"exported {result.name} version {result.version} ({result.state}, model sha256 "
        f"{result.model_sha256[:12]}) to {result.path}; audit row {result.audit_seq}"
    )
    out.print(f"serve it: mlflow models serve -m {result.path} --env-manager local")


from keel.cli import care, lifecycle  # noqa: E402,F401 - register keel monitor, retrain, approve, users, ... on app


def main() -> None:  # pragma: no cover - console entry point
    """Entry point for ``python -m keel``."""
    app(prog_name="keel")
    sys.exit(0)
