"""Follow the registry: when an alias moves to another version, apply it.

If applying fails, keep serving what is there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


def watch_alias(
    version_now: Callable[[], int | None],
    serving: Callable[[], int | None],
    apply: Callable[[int | None], object],
    *,
    interval: float,
    stop: threading.Event,
    what: str = "champion",
) -> threading.Thread:
    """Poll ``version_now`` every ``interval`` s; call ``apply`` when it differs from ``serving()``.

    A version whose ``apply`` fails (it does not load, verify or fit) is not retried until the
    alias moves again, so a corrupt version costs one attempt, not one per poll.
    """

    def loop() -> None:
        failed: int | None = None
        while not stop.wait(interval):
            try:
                wanted = version_now()
            except Exception as error:  # noqa: BLE001 - the registry may be briefly unreachable
                log.warning("cannot read the %s alias: %s", what, error)
                continue
            if wanted == serving() or (wanted is not None and wanted == failed):
                continue
            try:
                apply(wanted)
                failed = None
            except Exception as refused:  # noqa: BLE001 - whatever went wrong, the current model keeps serving
                failed = wanted
                log.error(
                    "not serving version %s as %s: %s",
                    wanted,
                    what,
                    getattr(refused, "detail", refused),
                )

    thread = threading.Thread(target=loop, name=f"keel-{what}-watch", daemon=True)
    thread.start()
    return thread
