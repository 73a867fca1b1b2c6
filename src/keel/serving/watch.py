"""Follow the registry: when the alias moves to another version, swap it in (or keep serving the old one)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from fastapi import FastAPI, HTTPException

log = logging.getLogger(__name__)


def watch_alias(app: FastAPI, version_now: Callable[[], int | None], *, interval: float,
                stop: threading.Event) -> threading.Thread:
    """Poll ``version_now`` every ``interval`` seconds and swap when it differs from the served version."""

    def loop() -> None:
        failed: int | None = None  # a version that failed to load is not retried until the alias moves again
        while not stop.wait(interval):
            try:
                wanted = version_now()
            except Exception as error:  # noqa: BLE001 - the registry may be briefly unreachable
                log.warning("cannot read the registry alias: %s", error)
                continue
            if wanted is None or wanted in (app.state.engine.version, failed):
                continue
            try:
                app.state.swap()
                failed = None
            except HTTPException as refused:
                failed = wanted
                log.error("not serving version %s: %s", wanted, refused.detail)

    thread = threading.Thread(target=loop, name="keel-alias-watch", daemon=True)
    thread.start()
    return thread
