"""The reviewer's console: the governance service's web face, server-rendered, without any script.

Every page reads through :class:`GovernanceService` as the signed-in user, and every form
posts to a console route that calls :meth:`GovernanceService.call`, the same path the JSON API
takes, so the console can do nothing the API would refuse (and refusals are audited there).

Sessions: signing in with a password creates a one-day API token (an audited ``token.create``)
kept in an HttpOnly, SameSite=Strict cookie (Secure on TLS) signed with a per-process secret
and re-issued on each page, so it lapses after :data:`IDLE_SECONDS` without a request;
signing out revokes the token. Each session has a CSRF token every form carries. Responses
send a strict Content-Security-Policy (no script, no inline style, nothing from elsewhere);
the model card, self-contained with inline styles, is framed from its own route with a CSP
of its own. Jinja2 autoescapes every value.
"""

from __future__ import annotations

import csv
import hmac
import io
import json
import secrets
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner
from jinja2 import Environment, PackageLoader, select_autoescape

from keel.errors import KeelError
from keel.evaluation.gates import judge, tighter
from keel.monitoring.latest import latest_path, read_latest
from keel.registry.principal import AuthenticationError, PermissionDenied, Principal
from keel.server.service import GovernanceError, GovernanceService

CONSOLE = "/console"
COOKIE = "keel_session"
IDLE_SECONDS = 15 * 60
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
CARD_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; "
    "base-uri 'none'"
)
_STATIC = Path(__file__).with_name("static")


@dataclass(frozen=True)
class ConsoleRoute:
    """A console route and the permission its action needs ("public", "session" or a permission)."""

    method: str
    path: str
    permission: str


V = f"{CONSOLE}/models/{{name}}/versions/{{version}}"
CONSOLE_ROUTES = (
    ConsoleRoute("GET", f"{CONSOLE}/login", "public"),
    ConsoleRoute("POST", f"{CONSOLE}/login", "public"),
    ConsoleRoute("GET", f"{CONSOLE}/static/console.css", "public"),
    ConsoleRoute("POST", f"{CONSOLE}/logout", "session"),
    ConsoleRoute("GET", CONSOLE, "session"),
    ConsoleRoute("GET", f"{CONSOLE}/models", "read"),
    ConsoleRoute("GET", V, "read"),
    ConsoleRoute("GET", f"{V}/card", "read"),
    ConsoleRoute("POST", f"{V}/approve", "approve"),
    ConsoleRoute("POST", f"{V}/reject", "reject"),
    ConsoleRoute("POST", f"{V}/promote", "promote"),
    ConsoleRoute("POST", f"{CONSOLE}/models/{{name}}/rollback", "rollback"),
    ConsoleRoute("GET", f"{CONSOLE}/audit", "read"),
    ConsoleRoute("GET", f"{CONSOLE}/audit.csv", "read"),
    ConsoleRoute("GET", f"{CONSOLE}/audit.json", "read"),
    ConsoleRoute("GET", f"{CONSOLE}/policy", "read"),
    ConsoleRoute("POST", f"{CONSOLE}/policy", "policy"),
    ConsoleRoute("GET", f"{CONSOLE}/me", "read"),
    ConsoleRoute("POST", f"{CONSOLE}/me/tokens", "read"),
    ConsoleRoute("GET", f"{CONSOLE}/monitoring", "read"),
)


@dataclass(frozen=True)
class Session:
    """A signed-in user: the API token the console acts with, and the session's CSRF token."""

    principal: Principal
    token: str
    csrf: str


class Console:
    """Pages and form handlers over one service."""

    def __init__(self, service: GovernanceService, *, secret: str | None = None) -> None:
        self.service = service
        self.signer = TimestampSigner(secret or secrets.token_urlsafe(32), salt="keel-console")
        self.pages = Environment(
            loader=PackageLoader("keel.server", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
        )

    # sessions -------------------------------------------------------------------------------
    def session(self, request: Request) -> Session | None:
        """The signed-in user, or None (no cookie, a forged or idle one, or a revoked token)."""
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            token, csrf = json.loads(self.signer.unsign(raw, max_age=IDLE_SECONDS))
            return Session(self.service.principal(token), token, csrf)
        except (BadSignature, SignatureExpired, ValueError, AuthenticationError):
            return None

    def _keep(self, response: Response, request: Request, session: Session) -> Response:
        """Re-issue the session cookie (sliding idle timeout) and the security headers."""
        value = self.signer.sign(json.dumps([session.token, session.csrf])).decode()
        response.set_cookie(
            COOKIE,
            value,
            max_age=IDLE_SECONDS,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=CONSOLE,
        )
        return response

    def render(
        self,
        request: Request,
        template: str,
        session: Session | None,
        status: int = 200,
        **values: Any,
    ) -> Response:
        """A page from ``template``, escaped, with the session's user and CSRF token for forms."""
        html = self.pages.get_template(template).render(
            me=session.principal if session else None,
            csrf=session.csrf if session else "",
            console=CONSOLE,
            message=request.query_params.get("message"),
            **values,
        )
        response = HTMLResponse(html, status_code=status)
        return self._keep(response, request, session) if session else response

    # pages ------------------------------------------------------------------------------------
    def models(self, request: Request, session: Session) -> Response:
        """Every model with its champion, challenger and versions' states."""
        return self.render(
            request,
            "models.html.j2",
            session,
            models=self.service.call("models", session.token, {}),
        )

    def version(
        self,
        request: Request,
        session: Session,
        name: str,
        number: int,
        *,
        error: str | None = None,
        status: int = 200,
    ) -> Response:
        """A version's decision summary, its card, and the actions the user's roles allow."""
        ledger = self.service.governance.ledger()
        model = ledger.model(name)
        found = model.versions.get(number)
        if found is None:
            return self.render(
                request,
                "error.html.j2",
                session,
                404,
                error=f"{name} v{number} is not registered in the audit log",
            )
        gates = judge(tighter(ledger.policy.thresholds, found.thresholds), found.measures)
        gates.sort(key=lambda g: g["passed"] is True)
        card = self._card_json(name, number)
        champion = model.versions.get(model.champion) if model.champion else None
        history = [
            r
            for r in self.service.call("audit", session.token, {"model": name})
            if r["object"] == f"{name}/v{number}"
        ]
        me = session.principal
        actions = {
            "approve": me.may("approve") and found.state == "validated",
            "reject": me.may("reject") and found.state in ("candidate", "validated", "approved"),
            "promote": me.may("promote") and found.state in ("approved", "retired"),
            "rollback": me.may("rollback")
            and found.state == "champion"
            and len(model.champions) > 1,
        }
        return self.render(
            request,
            "version.html.j2",
            session,
            status,
            name=name,
            v=found,
            gates=gates,
            policy=ledger.policy,
            card=card,
            champion=champion,
            history=history,
            actions=actions,
            error=error,
            has_card=self._card_file(name, number).is_file(),
        )

    def card(self, session: Session, name: str, number: int) -> Response:
        """The version's model card, framed by the version page under a CSP of its own."""
        path = self._card_file(name, number)
        if not path.is_file():
            return HTMLResponse(
                "<p>No model card was written for this version (keel train).</p>", 404
            )
        return FileResponse(
            path, media_type="text/html", headers={"Content-Security-Policy": CARD_CSP}
        )

    def audit(self, request: Request, session: Session) -> Response:
        """The history with filters, the chain's verification and the newest signed checkpoint."""
        rows = self._audit_rows(request, session)
        report = self.service.call("verify", session.token, {})
        checkpoints = self.service.governance.audit.checkpoints
        newest = checkpoints.newest() if checkpoints is not None else None
        return self.render(
            request,
            "audit.html.j2",
            session,
            rows=rows,
            report=report,
            newest=newest,
            filters=dict(request.query_params),
            query=urllib.parse.urlencode(request.query_params),
        )

    def audit_export(self, request: Request, session: Session, kind: str) -> Response:
        """The filtered history as CSV or JSON."""
        rows = self._audit_rows(request, session)
        if kind == "json":
            return JSONResponse(
                rows, headers={"Content-Disposition": 'attachment; filename="keel-audit.json"'}
            )
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(
            ["seq", "time", "actor", "by", "action", "object", "before", "after", "reason"]
        )
        for r in rows:
            writer.writerow(
                [
                    r["seq"],
                    r["time"],
                    r["actor"],
                    r["after"].get("by", ""),
                    r["action"],
                    r["object"],
                    json.dumps(r["before"]),
                    json.dumps(r["after"]),
                    r["reason"],
                ]
            )
        return Response(
            out.getvalue(),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="keel-audit.csv"'},
        )

    def policy(
        self, request: Request, session: Session, *, error: str | None = None, status: int = 200
    ) -> Response:
        """The policy in force, its history, and (for validators) the form to change it."""
        history = list(self.service.call("audit", session.token, {"action": "policy"}))
        return self.render(
            request,
            "policy.html.j2",
            session,
            status,
            policy=self.service.call("policy", session.token, {}),
            history=history[::-1],
            error=error,
        )

    def me(
        self,
        request: Request,
        session: Session,
        *,
        made: str | None = None,
        error: str | None = None,
    ) -> Response:
        """The user's roles and API tokens; a new token is shown once."""
        return self.render(
            request,
            "me.html.j2",
            session,
            about=self.service.call("me", session.token, {}),
            made=made,
            error=error,
        )

    def monitoring(self, request: Request, session: Session) -> Response:
        """Per model, the latest monitoring: alerts, drift, estimated vs realized AUC per window."""
        reports = {}
        for model in self.service.call("models", session.token, {}):
            reports[model["name"]] = read_latest(latest_path(self._project(), model["name"]))
        return self.render(request, "monitoring.html.j2", session, reports=reports)

    # helpers ------------------------------------------------------------------------------------
    def _project(self) -> Path:
        return self.service.project_dir or Path(".keel")

    def _card_file(self, name: str, number: int) -> Path:
        return self._project() / "cards" / name / f"v{number}" / "model_card.html"

    def _card_json(self, name: str, number: int) -> dict[str, Any]:
        path = self._card_file(name, number).with_suffix(".json")
        return json.loads(path.read_text()) if path.is_file() else {}

    def _audit_rows(self, request: Request, session: Session) -> list[dict[str, Any]]:
        q = request.query_params
        rows = self.service.call(
            "audit", session.token, {k: q[k] for k in ("model", "actor", "action") if q.get(k)}
        )
        since, until = q.get("since", ""), q.get("until", "")
        return [
            r
            for r in rows
            if (not since or r["time"] >= since) and (not until or r["time"][: len(until)] <= until)
        ]


async def _form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (the console's forms hold no files)."""
    return {
        k: v[-1]
        for k, v in urllib.parse.parse_qs(
            (await request.body()).decode(), keep_blank_values=True
        ).items()
    }


def mount_console(
    app: FastAPI, service: GovernanceService, *, secret: str | None = None
) -> Console:
    """Add the console's routes (:data:`CONSOLE_ROUTES`) to the governance app."""
    console = Console(service, secret=secret)

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        if request.url.path.startswith(CONSOLE):
            response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Referrer-Policy"] = "no-referrer"
            response.headers["Cache-Control"] = "no-store"
        return response

    def signed_in(request: Request) -> Session | Response:
        session = console.session(request)
        if session is not None:
            return session
        if request.method == "GET":
            target = urllib.parse.quote(request.url.path)
            return RedirectResponse(f"{CONSOLE}/login?next={target}", status_code=303)
        return JSONResponse({"detail": "sign in first"}, status_code=401)

    async def posted(request: Request) -> tuple[Session, dict[str, str]] | Response:
        """The session and form of a POST whose CSRF token matches the session's (403 otherwise)."""
        session = signed_in(request)
        if not isinstance(session, Session):
            return session
        form = await _form(request)
        if not hmac.compare_digest(form.pop("csrf", "").encode(), session.csrf.encode()):
            return console.render(
                request,
                "error.html.j2",
                session,
                403,
                error="this form is stale or was not sent by the console (CSRF check failed)",
            )
        return session, form

    @app.get(f"{CONSOLE}/static/console.css", include_in_schema=False)
    async def stylesheet() -> Response:
        return FileResponse(_STATIC / "console.css", media_type="text/css")

    @app.get(f"{CONSOLE}/login", include_in_schema=False)
    async def login_page(request: Request) -> Response:
        return console.render(
            request, "login.html.j2", None, next=_local(request.query_params.get("next"))
        )

    @app.post(f"{CONSOLE}/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = await _form(request)
        try:
            made = service.call(
                "create_token",
                None,
                {
                    "name": form.get("name", ""),
                    "password": form.get("password", ""),
                    "label": "console session",
                    "days": 1,
                },
            )
        except (KeelError, ValueError) as refused:
            return console.render(
                request,
                "login.html.j2",
                None,
                401,
                error=str(refused),
                next=_local(form.get("next")),
            )
        session = Session(
            service.principal(made["token"]), made["token"], secrets.token_urlsafe(24)
        )
        response = RedirectResponse(
            _local(form.get("next")) or f"{CONSOLE}/models", status_code=303
        )
        return console._keep(response, request, session)

    @app.post(f"{CONSOLE}/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        got = await posted(request)
        if isinstance(got, Response):
            return got
        session, _ = got
        service.call("revoke_token", session.token, {"token_id": session.token.split("_")[1]})
        response = RedirectResponse(f"{CONSOLE}/login?message=signed+out", status_code=303)
        response.delete_cookie(COOKIE, path=CONSOLE)
        return response

    def page(path: str, handler: Any) -> None:
        @app.get(path, include_in_schema=False, name=f"console:{path}")
        async def show(request: Request) -> Response:
            session = signed_in(request)
            if not isinstance(session, Session):
                return session
            try:
                return handler(request, session, **request.path_params)
            except PermissionDenied as refused:
                return console.render(request, "error.html.j2", session, 403, error=str(refused))

    page(CONSOLE, lambda r, s: RedirectResponse(f"{CONSOLE}/models", status_code=303))
    page(f"{CONSOLE}/models", console.models)
    page(V, lambda r, s, name, version: console.version(r, s, name, int(version)))
    page(f"{V}/card", lambda r, s, name, version: console.card(s, name, int(version)))
    page(f"{CONSOLE}/audit", console.audit)
    page(f"{CONSOLE}/audit.csv", lambda r, s: console.audit_export(r, s, "csv"))
    page(f"{CONSOLE}/audit.json", lambda r, s: console.audit_export(r, s, "json"))
    page(f"{CONSOLE}/policy", console.policy)
    page(f"{CONSOLE}/me", console.me)
    page(f"{CONSOLE}/monitoring", console.monitoring)

    def action(path: str, operation: str) -> None:
        @app.post(path, include_in_schema=False, name=f"console:{operation}")
        async def act(request: Request) -> Response:
            got = await posted(request)
            if isinstance(got, Response):
                return got
            session, form = got
            name = request.path_params["name"]
            args: dict[str, Any] = {"name": name, "note": form.get("note", "")}
            if "version" in request.path_params:
                args["version"] = int(request.path_params["version"])
            if operation == "approve" and form.get("conditions", "").strip():
                args["conditions"] = form["conditions"].strip()
            try:
                done = service.call(operation, session.token, args)
            except (KeelError, ValueError) as refused:
                status = 403 if isinstance(refused, (PermissionDenied, GovernanceError)) else 422
                version = args.get("version") or service.governance.ledger().model(name).champion
                if version is None:
                    return console.render(
                        request, "error.html.j2", session, status, error=str(refused)
                    )
                return console.version(
                    request, session, name, int(version), error=str(refused), status=status
                )
            note = urllib.parse.quote_plus(
                f"{operation}: {done['before']} -> {done['after']} (audit row {done['audit_seq']})"
            )
            return RedirectResponse(
                f"{CONSOLE}/models/{name}/versions/{done['version']}?message={note}", 303
            )

    for operation in ("approve", "reject", "promote"):
        action(f"{V}/{operation}", operation)
    action(f"{CONSOLE}/models/{{name}}/rollback", "rollback")

    @app.post(f"{CONSOLE}/policy", include_in_schema=False)
    async def change_policy(request: Request) -> Response:
        got = await posted(request)
        if isinstance(got, Response):
            return got
        session, form = got
        try:
            args = _policy_args(form)
            service.call("set_policy", session.token, args)
        except (KeelError, ValueError) as refused:
            status = 403 if isinstance(refused, (PermissionDenied, GovernanceError)) else 422
            return console.policy(request, session, error=str(refused), status=status)
        return RedirectResponse(f"{CONSOLE}/policy?message=policy+changed", status_code=303)

    @app.post(f"{CONSOLE}/me/tokens", include_in_schema=False)
    async def new_token(request: Request) -> Response:
        got = await posted(request)
        if isinstance(got, Response):
            return got
        session, form = got
        try:
            made = service.call(
                "create_token",
                None,
                {
                    "name": session.principal.name,
                    "password": form.get("password", ""),
                    "label": form.get("label") or "cli",
                    "days": 90,
                },
            )
        except (KeelError, ValueError) as refused:
            return console.me(request, session, error=str(refused))
        return console.me(request, session, made=made["token"])

    return console


def _policy_args(form: dict[str, str]) -> dict[str, Any]:
    """The policy form as :meth:`GovernanceService.set_policy` arguments.

    Thresholds are written ``min_auc=0.7, …``.
    """
    thresholds: dict[str, float] = {}
    for item in filter(
        None, (part.strip() for part in form.get("thresholds", "").replace("\n", ",").split(","))
    ):
        key, sep, value = item.partition("=")
        try:
            thresholds[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"'{item}' is not NAME=NUMBER (for example min_auc=0.7)") from None
    models = [m.strip() for m in form.get("auto_promote", "").split(",") if m.strip()]
    return {
        "note": form.get("note", ""),
        "thresholds": thresholds,
        "deployer_may_approve": form.get("deployer_may_approve") == "on",
        "auto_promote": models,
    }


def _local(target: str | None) -> str | None:
    """A redirect target only when it is a path inside the console (never another site)."""
    return target if target and target.startswith(f"{CONSOLE}/") and "//" not in target else None


__all__ = ["CONSOLE_ROUTES", "Console", "mount_console"]
