"""`keel serve`: uvicorn workers, each building the app from the same settings (in the environment).

Each worker loads and verifies the champion, follows the champion and challenger aliases,
computes online features from the feature store when the model has them, logs every answer,
and on SIGTERM drains: ``/readyz`` answers 503 for ``drain_seconds`` while requests are still
served (so a load balancer stops sending), then uvicorn stops accepting, finishes the requests
in flight and exits.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fastapi import FastAPI

from keel.errors import IntegrityError
from keel.features.stores import open_store
from keel.monitoring.latest import latest_path
from keel.registry.governance import Governance
from keel.registry.project import ProjectStore
from keel.serving.app import create_app
from keel.serving.loader import alias_disagreement, audited_version, load_alias
from keel.serving.metrics import process_ended
from keel.serving.predictions import PredictionLog
from keel.serving.served import ServedModel
from keel.serving.watch import watch_alias

_ENV = "KEEL_SERVE_SETTINGS"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeSettings:
    """What a worker needs to find, verify and serve the model."""

    project_dir: str
    tracking_uri: str | None
    model: str
    governance_uri: str | None = None  # the audit log that says which version is champion
    checkpoints: str | None = None
    alias: str = "champion"  # what answers requests: only ever the audit log's champion
    max_batch: int = 1000
    allowed_hosts: list[str] = field(default_factory=list)
    prediction_log: str | None = None  # SQLite file; default predictions.db in the project folder
    watch_seconds: float = (
        5.0  # how often to check whether the aliases moved; 0: only /admin/reload
    )
    shadow_alias: str | None = (
        "challenger"  # scored in the shadow when set in the registry; None: never
    )
    drain_seconds: float = (
        5.0  # after SIGTERM: /readyz is 503 this long while requests are still answered
    )
    request_timeout: float = 10.0
    max_in_flight: int = 256  # scoring requests per worker beyond which it answers 503
    # requests open from one client address per worker beyond which it answers 503; 0: no cap
    max_per_client: int = 64
    body_timeout: float = 10.0  # seconds to receive a whole request body (408)
    feature_store: str | None = (
        None  # online features' events: None in process, or redis://host:port/db
    )

    def __post_init__(self) -> None:
        if self.alias != "champion" or self.shadow_alias not in (None, "challenger"):
            raise ValueError(
                "keel serve answers with the audit log's champion and shadows only its challenger; "
                f"alias={self.alias!r}, shadow_alias={self.shadow_alias!r}"
            )

    def export(self) -> None:
        """Put the settings where worker processes read them (the API key goes as KEEL_API_KEY)."""
        os.environ[_ENV] = json.dumps(asdict(self))


def default_allowed_hosts(bind: str) -> list[str]:
    """The Host headers a server bound to ``bind`` answers when none are configured.

    They are the bind address itself (and its loopback names); bound to every address, any host
    (name them with --allowed-host).
    """
    if bind in ("0.0.0.0", "::", ""):
        return []
    if bind in ("127.0.0.1", "localhost", "::1"):
        return ["127.0.0.1", "localhost"]
    return [bind]


def app_from_environment() -> FastAPI:
    """The uvicorn factory: load and verify the alias's version, then build the app around it."""
    settings = ServeSettings(**json.loads(os.environ[_ENV]))
    governance = _governance(settings)
    prediction_log = PredictionLog(
        Path(settings.prediction_log or Path(settings.project_dir) / "predictions.db")
    )
    feature_store = open_store(settings.feature_store, prefix=f"keel:{settings.model}")
    stop = threading.Event()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _drain_on_sigterm(app, settings.drain_seconds)
        yield
        stop.set()
        app.state.shadow.drain()
        prediction_log.close()
        if hasattr(feature_store, "close"):
            feature_store.close()
        process_ended()

    def reload() -> ServedModel:
        return load_verified(governance, settings.model, settings.alias)

    app = create_app(
        reload(),
        max_batch=settings.max_batch,
        reload=reload,
        api_key=os.environ.get("KEEL_API_KEY") or None,
        allowed_hosts=settings.allowed_hosts or None,
        prediction_log=prediction_log,
        max_in_flight=settings.max_in_flight,
        max_per_client=settings.max_per_client,
        body_timeout=settings.body_timeout,
        request_timeout=settings.request_timeout,
        lifespan=lifespan,
        feature_store=feature_store,
        monitoring_file=latest_path(Path(settings.project_dir), settings.model),
    )
    if settings.watch_seconds > 0:
        _follow(app, settings, stop)
    return app


def _follow(app: FastAPI, settings: ServeSettings, stop: threading.Event) -> None:
    """Follow the audit log: swap when it moves the served alias, shadow its challenger.

    The MLflow mirror is watched too.

    A move is applied only when the audit log verifies (:func:`load_verified`).
    When MLflow's alias disagrees with the audit log, the audited version keeps serving, the
    other is refused, and ``keel_alias_mismatch{alias}`` holds the alias's version (an error
    is logged once per disagreement). Each watcher thread opens its own governance handle.
    """
    served = _governance(settings)
    mismatched: dict[str, int | None] = {}

    def audited(alias: str, governance: Governance) -> int | None:
        version = audited_version(governance, settings.model, alias)
        other = alias_disagreement(governance, settings.model, alias)
        app.state.metrics.alias_mismatch.labels(alias).set(other or 0)
        if other is not None and mismatched.get(alias) != other:
            log.error(
                "ALERT: MLflow alias %s@%s points at version %s but the audit log says %s; "
                "serving the audited version and refusing the other (keel audit verify names the "
                "mismatch)",
                settings.model,
                alias,
                other or "none",
                version,
            )
        mismatched[alias] = other
        return version

    def champion(version: int | None) -> None:
        if version is not None:  # an alias removed leaves the current version serving
            app.state.swap()

    watch_alias(
        lambda: audited(settings.alias, served),
        lambda: app.state.engine.version,
        champion,
        interval=settings.watch_seconds,
        stop=stop,
        what=settings.alias,
    )
    shadow_alias, shadow = settings.shadow_alias, app.state.shadow
    if not shadow_alias:
        return
    shadowed = _governance(settings)

    def challenger(version: int | None) -> None:
        engine = None if version is None else load_verified(shadowed, settings.model, shadow_alias)
        if engine is not None:
            app.state.check_contract(engine, "not scoring it in the shadow")
        shadow.set_engine(engine)

    def shadowing() -> int | None:
        return shadow.engine.version if shadow.engine else None

    watch_alias(
        lambda: audited(shadow_alias, shadowed),
        shadowing,
        challenger,
        interval=settings.watch_seconds,
        stop=stop,
        what=shadow_alias,
    )


def load_verified(governance: Governance, name: str, alias: str) -> ServedModel:
    """:func:`load_alias` once the audit log verifies.

    An inserted, edited or rolled-back row moves nothing.
    """
    problems = governance.audit.verify()
    if problems:
        raise IntegrityError(
            f"ALERT: the audit log does not verify ({problems[0].kind}: {problems[0].detail}); "
            f"not loading the {alias} it names"
        )
    return load_alias(governance, name, alias)


def _governance(settings: ServeSettings) -> Governance:
    store = ProjectStore(
        Path(settings.project_dir),
        settings.tracking_uri,
        settings.governance_uri,
        settings.checkpoints,
        settings.model,
    )
    return store.governance(writer=False)


def _drain_on_sigterm(app: FastAPI, seconds: float) -> None:
    """Make SIGTERM mark the app not ready, then hand it to uvicorn's handler ``seconds`` later.

    Runs in the lifespan, after uvicorn installed its handlers; only in the main thread
    (a test client runs the lifespan elsewhere and keeps uvicorn's behaviour).
    """
    stop_serving = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or not callable(stop_serving):
        return

    def draining(sig: int, frame: object) -> None:
        if not app.state.ready:
            return  # already draining (the supervisor and a process-group kill may both send one)
        app.state.ready = False
        log.warning("SIGTERM: draining for %g s, then finishing the requests in flight", seconds)
        timer = threading.Timer(seconds, stop_serving, (sig, frame))
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, draining)
