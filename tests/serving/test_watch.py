"""Following the alias: a moved champion is swapped in.

A corrupt one is refused once and the old one serves.
"""

from __future__ import annotations

import threading
import time

from keel.errors import IntegrityError
from keel.serving.app import create_app
from keel.serving.served import ServedModel
from keel.serving.watch import watch_alias
from keel.spec import parse_spec
from keel.training.trainer import train_model

from factories import loans_spec, make_loans


def _wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_the_server_follows_the_alias_and_skips_a_version_that_fails_to_verify() -> None:
    raw = loans_spec("unused.csv", tuning={"trials": 2}, models={"families": ["logistic"]})
    model = train_model(make_loans(rows=600, seed=2), parse_spec(raw)).model
    alias = {"version": 1}
    corrupt = {3}
    loads: list[int] = []

    def reload() -> ServedModel:
        loads.append(alias["version"])
        if alias["version"] in corrupt:
            raise IntegrityError(f"version {alias['version']}: sha256 does not match")
        return ServedModel(model, "loans", alias["version"])

    app = create_app(ServedModel(model, "loans", 1), reload=reload)
    stop = threading.Event()
    watcher = watch_alias(
        lambda: alias["version"],
        lambda: app.state.engine.version,
        lambda _: app.state.swap(),
        interval=0.02,
        stop=stop,
    )
    try:
        alias["version"] = 2
        assert _wait_for(lambda: app.state.engine.version == 2)
        alias["version"] = 3
        assert _wait_for(lambda: loads.count(3) == 1)
        time.sleep(0.2)  # many polls later: version 3 was not retried, version 2 still serves
        assert app.state.engine.version == 2 and loads.count(3) == 1
        alias["version"] = 4
        assert _wait_for(lambda: app.state.engine.version == 4)
    finally:
        stop.set()
        watcher.join(timeout=5)
