"""What every ``keel`` command shares: app, consoles, options, error handling, opening a project.

The command modules (:mod:`keel.cli.main`, :mod:`keel.cli.care`, :mod:`keel.cli.lifecycle`) import
from here and never from each other, so there is no import cycle among them.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from keel.errors import ContractError, KeelError

# Help texts are plain: "[default: ...]" in a help text is no Rich markup tag to swallow.
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Keel: tabular models to production, governed.",
)


def _version(shown: bool) -> None:
    if shown:
        from keel import __version__

        out.print(f"keel {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Keel: tabular models to production, governed."""


models_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Registered models and their versions."
)
app.add_typer(models_app, name="models")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
SpecArg = Annotated[Path, typer.Argument(help="Path of the project's keel.yaml.")]
ProjectDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--project-dir", help="Where runs, models and cards go [default: .keel beside the spec]."
    ),
]
# The --author default, read once at import as a typer default would be (B008).
DEFAULT_AUTHOR = getpass.getuser()
AuthorOpt = Annotated[
    str,
    typer.Option(
        "--author",
        help="Name recorded, unverified, when KEEL_TOKEN is not set; "
        "such a version cannot be approved.",
    ),
]
SpecOpt = Annotated[Path | None, typer.Option("--spec", help="A keel.yaml whose registry to use.")]
UriOpt = Annotated[str | None, typer.Option("--tracking-uri", help="An MLflow tracking URI.")]
ModelOpt = Annotated[str | None, typer.Option(help="Model name [default: the spec's].")]


@contextmanager
def _keel_errors(report: Path | None = None) -> Iterator[None]:
    """Turn KeelErrors into a red message and the error's exit code (no traceback)."""
    try:
        yield
    except ContractError as error:
        err.print("[bold red]Data contract broken[/] - nothing was trained or registered.")
        err.print(str(error), markup=False, highlight=False)
        from keel.contracts.validate import ContractReport  # keel.errors types ``report`` object
        from keel.io.files import write_text_atomic

        if report is not None and isinstance(error.report, ContractReport):
            write_text_atomic(report, json.dumps(error.report.to_dict(), indent=2, default=str))
            err.print(f"full report: {report}")
        raise typer.Exit(error.exit_code) from None
    except KeelError as error:
        err.print(f"[bold red]{type(error).__name__}[/]: ", end="")
        err.print(str(error), markup=False, highlight=False)
        raise typer.Exit(error.exit_code) from None


def _quiet_libraries() -> None:
    import mlflow  # noqa: F401  (it sets its own log levels on import; ours must come after)

    for name in ("mlflow", "alembic", "optuna", "lightgbm"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("distributed.shuffle").setLevel(
        logging.ERROR
    )  # a notice per shuffle, at WARNING


def _load(spec_path: Path) -> Any:
    from keel.spec import load_spec

    return load_spec(spec_path)


def _project_dir(spec_path: Path, project_dir: Path | None) -> Path:
    return project_dir if project_dir is not None else spec_path.resolve().parent / ".keel"


def _principal(spec: Any, folder: Path) -> Any:
    """The developer whose API token is in KEEL_TOKEN, or None.

    The token is checked against the project's users in process.
    """
    token = os.environ.get("KEEL_TOKEN")
    if not token:
        return None
    from keel.registry.project import ProjectStore
    from keel.server.service import GovernanceService

    return GovernanceService.open(ProjectStore.of(spec, folder)).principal(token)


def _project(
    spec_path: Path | None, project_dir: Path | None, tracking_uri: str | None = None
) -> Any:
    """The project's stores from --spec / --project-dir / --tracking-uri (a ProjectStore)."""
    from keel.registry.project import ProjectStore

    spec = _load(spec_path) if spec_path else None
    folder = project_dir or (_project_dir(spec_path, None) if spec_path else Path(".keel"))
    return ProjectStore.of(spec, folder, tracking_uri=tracking_uri)
