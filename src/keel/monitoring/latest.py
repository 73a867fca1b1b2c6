"""``latest.json``: a model's newest monitoring results, for ``/metrics``, console and next run.

One file per model, ``monitoring/<model>/latest.json`` in the project folder: a monitoring
report's plain-JSON form plus ``judged_through``, how far the data it judged reaches. It only
moves forward, and never to a future ``--as-of`` (an as-of past the data judges nothing there).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from keel.io.files import write_text_atomic
from keel.io.times import as_of_time


def latest_path(project_dir: Path, model: str) -> Path:
    """Where ``model``'s latest results live in the project folder."""
    return project_dir / "monitoring" / model / "latest.json"


def read_latest(path: Path) -> dict[str, Any] | None:
    """The stored results, or None when no monitoring run has written any."""
    if not path.is_file():
        return None
    stored: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return stored


def judged_through(path: Path) -> pd.Timestamp | None:
    """How far the previous run judged (``judged_through``), or None.

    A file written by an older version has no ``judged_through``: its as-of is used.
    """
    stored = read_latest(path)
    seen = stored and (stored.get("judged_through") or stored.get("as_of"))
    return as_of_time(seen) if seen else None


def advance_latest(path: Path, report: dict[str, Any], through: pd.Timestamp | None) -> bool:
    """Store ``report`` as judged through ``through``; True if written.

    Nothing is written when ``through`` is None or behind what is stored.
    """
    previous = judged_through(path)
    if through is None or (previous is not None and through < previous):
        return False
    write_text_atomic(path, json.dumps({**report, "judged_through": str(through)}, default=str))
    return True
