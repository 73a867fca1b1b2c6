"""`keel serve`: uvicorn workers, each building the app from the same settings (passed in the environment)."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fastapi import FastAPI

from keel.registry.store import Registry
from keel.serving.app import create_app
from keel.serving.loader import load_alias
from keel.serving.predictions import PredictionLog
from keel.serving.watch import watch_alias

_ENV = "KEEL_SERVE_SETTINGS"


@dataclass(frozen=True)
class ServeSettings:
    """What a worker needs to find, verify and serve the model."""

    project_dir: str
    tracking_uri: str | None
    model: str
    alias: str = "champion"
    max_batch: int = 1000
    allowed_hosts: list[str] = field(default_factory=list)
    prediction_log: str | None = None  # SQLite file; default predictions.db in the project folder
    watch_seconds: float = 5.0  # how often to check whether the alias moved; 0: only /admin/reload

    def export(self) -> None:
        """Put the settings where worker processes read them (the API key travels as KEEL_API_KEY)."""
        os.environ[_ENV] = json.dumps(asdict(self))


def app_from_environment() -> FastAPI:
    """The uvicorn factory: load and verify the alias's version, then build the app around it."""
    settings = ServeSettings(**json.loads(os.environ[_ENV]))
    registry = Registry.for_project(Path(settings.project_dir), settings.tracking_uri)
    app = create_app(
        load_alias(registry, settings.model, settings.alias),
        max_batch=settings.max_batch,
        reload=lambda: load_alias(registry, settings.model, settings.alias),
        api_key=os.environ.get("KEEL_API_KEY") or None,
        allowed_hosts=settings.allowed_hosts or None,
        prediction_log=PredictionLog(Path(settings.prediction_log or Path(settings.project_dir) / "predictions.db")),
    )
    if settings.watch_seconds > 0:
        def version_now() -> int | None:
            info = registry.alias(settings.model, settings.alias)
            return info.version if info else None

        watch_alias(app, version_now, interval=settings.watch_seconds, stop=threading.Event())
    return app
