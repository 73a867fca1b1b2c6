"""Lifecycle, policy, audit and user commands: each is one call to the governance service.

With ``KEEL_SERVER`` set they go to that server over HTTP; otherwise the service runs in this
process over the project's governance store. Either way the caller is the owner of the API
token in ``KEEL_TOKEN``: there is no option to say who you are.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from keel.cli.common import (
    ModelOpt,
    ProjectDirOpt,
    SpecOpt,
    _keel_errors,
    _project,
    _quiet_libraries,
    app,
    err,
    out,
)

SERVER_ENV, TOKEN_ENV = "KEEL_SERVER", "KEEL_TOKEN"
users_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Users and their roles (admins only)."
)
token_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Your API tokens (for the CLI and CI)."
)
policy_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="The governance policy validators own."
)
audit_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="The signed, tamper-evident audit log."
)
app.add_typer(users_app, name="users")
app.add_typer(token_app, name="token")
app.add_typer(policy_app, name="policy")
app.add_typer(audit_app, name="audit")
NoteOpt = Annotated[str, typer.Option("--note", help="Why: recorded in the audit log.")]
VersionArg = Annotated[int, typer.Argument(help="Version number.")]


def service(spec: Path | None, project_dir: Path | None, *, create: bool = False) -> Any:
    """The in-process service of the project named by --spec / --project-dir."""
    from keel.server.service import GovernanceService

    return GovernanceService.open(_project(spec, project_dir), create=create)


def client(spec: Path | None, project_dir: Path | None, *, create: bool = False) -> Any:
    """``KEEL_SERVER``'s HTTP client, else the project's service in process, with ``KEEL_TOKEN``."""
    from keel.server.client import HttpClient, LocalClient

    token = os.environ.get(TOKEN_ENV) or None
    if os.environ.get(SERVER_ENV):
        return HttpClient(os.environ[SERVER_ENV], token)
    return LocalClient(service(spec, project_dir, create=create), token)


def _model(spec: Path | None, project_dir: Path | None, model: str | None) -> str:
    name = model or _project(spec, project_dir).model
    if not name:
        raise typer.BadParameter("give --model or --spec", param_hint="--model")
    return name


def _transition(
    caller: Any, operation: str, spec: Path | None, project_dir: Path | None, **args: Any
) -> None:
    """Run a lifecycle operation, print what it changed, and re-render the cards it touched.

    Cards are re-rendered with the local store only (not through ``KEEL_SERVER``).
    """
    from keel.server.client import LocalClient

    result = caller.call(operation, **args)
    out.print(
        f"{result['model']} version {result['version']}: {result['before']} -> {result['after']} "
        f"(audit row {result['audit_seq']})"
    )
    if not isinstance(caller, LocalClient):
        return
    from keel.errors import CardError
    from keel.lifecycle.card_refresh import refresh_card, versions_touched

    governance = caller.service.governance
    folder = _project(spec, project_dir).folder
    row = next(r for r in governance.audit.rows() if r.seq == result["audit_seq"])
    for version in versions_touched(row):
        try:
            card = refresh_card(folder, result["model"], version, governance=governance)
            out.print(f"model card updated: {card}")
        except CardError as error:
            err.print(f"version {version}: card not updated: ", end="")
            err.print(str(error), markup=False, highlight=False)


@app.command()
def approve(
    version: VersionArg,
    note: NoteOpt,
    conditions: Annotated[
        str | None, typer.Option(help="Approve with these conditions (text).")
    ] = None,
    spec: SpecOpt = None,
    project_dir: ProjectDirOpt = None,
    model: ModelOpt = None,
) -> None:
    """Approve a validated version (a validator, not its author), optionally with conditions."""
    _quiet_libraries()
    with _keel_errors():
        name = _model(spec, project_dir, model)
        _transition(
            client(spec, project_dir),
            "approve",
            spec,
            project_dir,
            name=name,
            version=version,
            note=note,
            conditions=conditions,
        )


@app.command()
def reject(
    version: VersionArg,
    note: NoteOpt,
    spec: SpecOpt = None,
    project_dir: ProjectDirOpt = None,
    model: ModelOpt = None,
) -> None:
    """Reject a version (a validator); it can never be approved afterwards."""
    _quiet_libraries()
    with _keel_errors():
        name = _model(spec, project_dir, model)
        _transition(
            client(spec, project_dir),
            "reject",
            spec,
            project_dir,
            name=name,
            version=version,
            note=note,
        )


@app.command()
def promote(
    version: VersionArg,
    note: NoteOpt = "",
    spec: SpecOpt = None,
    project_dir: ProjectDirOpt = None,
    model: ModelOpt = None,
) -> None:
    """Make an approved version the champion (a deployer, neither its author nor its approver)."""
    _quiet_libraries()
    with _keel_errors():
        name = _model(spec, project_dir, model)
        _transition(
            client(spec, project_dir),
            "promote",
            spec,
            project_dir,
            name=name,
            version=version,
            note=note,
        )


@app.command()
def rollback(
    note: NoteOpt, spec: SpecOpt = None, project_dir: ProjectDirOpt = None, model: ModelOpt = None
) -> None:
    """Restore the previous champion (a deployer)."""
    _quiet_libraries()
    with _keel_errors():
        name = _model(spec, project_dir, model)
        _transition(client(spec, project_dir), "rollback", spec, project_dir, name=name, note=note)


def _password(from_stdin: bool, *, confirm: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(typer.prompt("password", hide_input=True, confirmation_prompt=confirm))


@users_app.command("add")
def users_add(
    name: Annotated[
        str, typer.Argument(help="User name: letters, digits, '.', '-', '_' in one script.")
    ],
    role: Annotated[
        list[str],
        typer.Option("--role", help="admin, developer, validator, deployer or viewer (repeat)."),
    ],
    display: Annotated[
        str | None, typer.Option(help="Display name [default: the user name].")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
    spec: SpecOpt = None,
    project_dir: ProjectDirOpt = None,
) -> None:
    """Add a user (an admin's token; the very first user needs none and must be an admin)."""
    _quiet_libraries()
    with _keel_errors():
        added = client(spec, project_dir, create=True).call(
            "add_user",
            name=name,
            roles=role,
            password=_password(password_stdin, confirm=True),
            display=display,
        )
    out.print(f"added user {added['name']} ({', '.join(added['roles'])}), id {added['id']}")


@users_app.command("list")
def users_list(spec: SpecOpt = None, project_dir: ProjectDirOpt = None) -> None:
    """Every user with roles and state."""
    with _keel_errors():
        users = client(spec, project_dir).call("list_users")
    table = Table(title="Users")
    for column in ("name", "id", "roles", "disabled"):
        table.add_column(column)
    for user in users:
        table.add_row(
            user["name"], user["id"], ", ".join(user["roles"]), str(user.get("disabled", False))
        )
    out.print(table)


@users_app.command("disable")
def users_disable(
    name: Annotated[str, typer.Argument(help="User name.")],
    spec: SpecOpt = None,
    project_dir: ProjectDirOpt = None,
) -> None:
    """Disable a user; their tokens stop working at once."""
    with _keel_errors():
        client(spec, project_dir).call("disable_user", name=name)
    out.print(f"disabled {name}")


@token_app.command("create")
def token_create(
    user: Annotated[
        str, typer.Option("--user", help="Your user name (you sign in with your password).")
    ],
    label: Annotated[str, typer.Option(help="What the token is for.")] = "cli",
    days: Annotated[int, typer.Option(min=1, max=365, help="Days until it expires.")] = 90,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
    spec: SpecOpt = None,
    project_dir: ProjectDirOpt = None,
) -> None:
    """Sign in and create an API token; it is printed once (set it as KEEL_TOKEN)."""
    with _keel_errors():
        made = client(spec, project_dir).call(
            "create_token",
            name=user,
            password=_password(password_stdin, confirm=False),
            label=label,
            days=days,
        )
    out.print(made["token"], markup=False, highlight=False)
    err.print(
        f"token for {made['user']}, valid {made['days']} days; shown only now: export KEEL_TOKEN=…"
    )


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (keel_<id>_…).")],
    spec: SpecOpt = None,
    project_dir: ProjectDirOpt = None,
) -> None:
    """Revoke one of your tokens (or, as an admin, anyone's)."""
    with _keel_errors():
        client(spec, project_dir).call("revoke_token", token_id=token_id)
    out.print(f"revoked {token_id}")


@policy_app.command("show")
def policy_show(spec: SpecOpt = None, project_dir: ProjectDirOpt = None) -> None:
    """The governance policy in force."""
    with _keel_errors():
        out.print_json(json.dumps(client(spec, project_dir).call("policy")))


@policy_app.command("set")
def policy_set(
    note: NoteOpt,
    gate: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=THRESHOLD, e.g. min_auc=0.7 (repeat); replaces all gate floors when given."
        ),
    ] = None,
    deployer_may_approve: Annotated[
        bool | None,
        typer.Option(
            "--deployer-may-approve/--deployer-may-not-approve",
            help="May a version's approver also promote it?",
        ),
    ] = None,
    auto_promote: Annotated[
        list[str] | None, typer.Option(help="Model whose retraining may promote (repeat).")
    ] = None,
    spec: SpecOpt = None,
    project_dir: ProjectDirOpt = None,
) -> None:
    """A validator sets a new policy version (audited); what is not given is kept."""
    with _keel_errors():
        thresholds = None
        if gate is not None:
            thresholds = {}
            for item in gate:
                key, sep, value = item.partition("=")
                try:
                    thresholds[key.strip()] = float(value)
                except ValueError:
                    raise typer.BadParameter(
                        f"'{item}' is not NAME=NUMBER", param_hint="--gate"
                    ) from None
        policy = client(spec, project_dir).call(
            "set_policy",
            note=note,
            thresholds=thresholds,
            deployer_may_approve=deployer_may_approve,
            auto_promote=auto_promote,
        )
    settings = {k: policy[k] for k in ("thresholds", "deployer_may_approve", "auto_promote")}
    out.print(
        f"policy version {policy['version']}: {json.dumps(settings)}", markup=False, highlight=False
    )


@audit_app.command("verify")
def audit_verify(spec: SpecOpt = None, project_dir: ProjectDirOpt = None) -> None:
    """Check the chain, signatures, newest checkpoint, registry mirror and users (exit 9)."""
    from keel.server.service import verify_project

    _quiet_libraries()
    with _keel_errors():
        if os.environ.get(SERVER_ENV):
            report = client(spec, project_dir).call("verify")
        else:
            report = verify_project(_project(spec, project_dir))
    if report["intact"]:
        out.print(
            f"audit log intact: {report['rows']} rows; every link, signature and checkpoint "
            "checks out, and the registry mirrors it"
        )
        return
    for problem in report["problems"]:
        where = f" row {problem['seq']}" if problem.get("seq") is not None else ""
        err.print(f"[red]{problem['kind']}[/]{where}: {problem['detail']}", highlight=False)
    raise typer.Exit(9)


@audit_app.command("rotate-key")
def audit_rotate_key(
    note: NoteOpt, spec: SpecOpt = None, project_dir: ProjectDirOpt = None
) -> None:
    """Hand audit signing to a new Ed25519 key (an admin, where the key lives).

    The old key signs the hand-over.
    """
    from keel.registry.governance import KEY_ENV
    from keel.registry.signing import AuditKey

    with _keel_errors():
        if os.environ.get(SERVER_ENV):
            raise typer.BadParameter(
                "rotate the key on the governance service's host, where the key file is "
                f"(unset {SERVER_ENV})"
            )
        opened = service(spec, project_dir)
        admin = opened.principal(os.environ.get(TOKEN_ENV))
        admin.require("keys")
        old = opened.governance.audit.key
        path = Path(
            os.environ.get(KEY_ENV) or _project(spec, project_dir).folder / "keys" / "audit.key"
        )
        fresh = path.with_name(f".{path.name}.new")
        fresh.unlink(missing_ok=True)
        new = AuditKey.load_or_create(fresh)
        row = opened.governance.audit.rotate_key(new, actor=admin.actor, reason=note)
        os.replace(path, path.with_name(f"{path.name}.{old.key_id}.retired"))
        os.replace(fresh, path)
    out.print(
        f"audit key {old.key_id} -> {new.key_id} (audit row {row.seq}); the old key is kept as "
        f"{path.name}.{old.key_id}.retired"
    )


@audit_app.command("list")
def audit_list(
    model: ModelOpt = None,
    actor: Annotated[str | None, typer.Option()] = None,
    action: Annotated[str | None, typer.Option()] = None,
    spec: SpecOpt = None,
    project_dir: ProjectDirOpt = None,
) -> None:
    """Audit rows, filtered by model, actor and action."""
    with _keel_errors():
        rows = client(spec, project_dir).call("audit", model=model, actor=actor, action=action)
    table = Table(title="Audit log")
    for column in ("#", "time (UTC)", "actor", "action", "object", "after", "reason"):
        table.add_column(column)
    for row in rows:
        who = row["after"].get("by") or row["actor"]
        table.add_row(
            str(row["seq"]),
            row["time"][:19],
            who,
            row["action"],
            row["object"],
            json.dumps(
                {k: v for k, v in row["after"].items() if k in ("state", "champion", "attempt")}
            ),
            row["reason"],
        )
    out.print(table)


@app.command()
def server(
    spec: SpecOpt = None,
    project_dir: ProjectDirOpt = None,
    host: Annotated[
        str, typer.Option(help="Address to bind; loopback unless told otherwise.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8700,
) -> None:
    """Run the governance service: the one writer of lifecycle state.

    Set KEEL_SERVER=http://HOST:PORT to use it.
    """
    import uvicorn

    from keel.server.api import create_governance_app
    from keel.web.protocol import LimitedHttpTools

    _quiet_libraries()
    with _keel_errors():
        app_ = create_governance_app(service(spec, project_dir, create=True))
    uvicorn.run(
        app_, host=host, port=port, http=LimitedHttpTools, log_level="warning", access_log=False
    )
