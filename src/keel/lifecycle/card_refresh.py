"""Keep a model card's lifecycle state and audit history current, without retraining.

Approvals, promotions and rollbacks happen after the run that wrote the card. The card
keeps its JSON and its plots (drawn once from the test rows) in its folder, so adding the
version's current state and audit history is a reload and a re-render; the CLI does it
after every transition, for each version the transition changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from keel.lifecycle.card import card_dir
from keel.registry.audit import AuditRow
from keel.registry.governance import ROLE_OF_ACTION, Governance
from keel.reports.model_card import read_model_card, write_model_card


def _fields(text: str) -> dict[str, Any]:
    """An audit row's before/after JSON as a dict (empty when there is none)."""
    value = json.loads(text) if text else None
    return value if isinstance(value, dict) else {}


def _version_of(row: AuditRow) -> int:
    """The version an audit row is about (its object is '<name>/v<version>')."""
    return int(row.object.rpartition("/v")[2])


def versions_touched(row: AuditRow) -> list[int]:
    """The versions an audit row changed: its object, and any champion it replaced or restored."""
    touched = {_version_of(row)}
    for side in (row.before, row.after):
        champion = _fields(side).get("champion")
        if isinstance(champion, int):
            touched.add(champion)
    return sorted(touched)


def lifecycle_section(governance: Governance, name: str, version: int) -> dict[str, Any]:
    """The version's state, the model's champion, and every audit row that changed this version."""
    history = []
    for row in governance.history(name):
        if version not in versions_touched(row):
            continue
        before, after = _fields(row.before), _fields(row.after)
        history.append({
            "seq": row.seq, "time": row.time, "version": _version_of(row), "action": row.action,
            "actor": row.actor, "role": ROLE_OF_ACTION.get(row.action), "before": before,
            "after": {key: value for key, value in after.items() if key != "gates"}, "note": row.reason,
            "gates": after.get("gates"),
        })
    champion = governance.champion(name)
    return {
        "state": governance.state(governance.registry.version(name, version)),
        "champion": champion.version if champion is not None else None,
        "audit_intact": not governance.audit.verify(),
        "as_of": history[-1]["time"] if history else None,
        "history": history,
    }


def refresh_card(project_dir: Path, name: str, version: int | str, *, governance: Governance | None = None) -> Path:
    """Re-render a version's stored card with its current state and audit history; returns the HTML path."""
    governance = governance or Governance.for_project(project_dir)
    info = governance.registry.version(name, version)
    folder = card_dir(project_dir, info.name, info.version)
    card, plots = read_model_card(folder)
    card["lifecycle"] = lifecycle_section(governance, info.name, info.version)
    html_path, _ = write_model_card(card, plots, folder)
    return html_path
