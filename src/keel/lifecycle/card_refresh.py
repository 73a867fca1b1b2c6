"""Keep a model card's lifecycle state and audit history current, without retraining.

Approvals, promotions and rollbacks happen after the run that wrote the card. The card
keeps its JSON and its plots (drawn once from the test rows) in its folder, so adding the
version's current state and audit history is a reload and a re-render; the CLI does it
after every transition, for each version the transition changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from keel.lifecycle.card import card_dir
from keel.registry.audit import AuditRow
from keel.registry.governance import ROLE_OF_ACTION, Governance
from keel.registry.states import fields_of, split_object
from keel.reports.model_card import read_model_card, write_model_card

_SHOWN = (
    "state",
    "champion",
    "previous",
    "retired",
    "challenger",
    "conditions",
    "policy",
    "attempt",
    "decision",
)


def versions_touched(row: AuditRow) -> list[int]:
    """The versions an audit row changed: its object, and any champion it replaced or restored."""
    target = split_object(row.object)
    touched = {target[1]} if target else set()
    for side in (row.before, row.after):
        champion = fields_of(side).get("champion")
        if isinstance(champion, int):
            touched.add(champion)
    return sorted(touched)


def lifecycle_section(governance: Governance, name: str, version: int) -> dict[str, Any]:
    """The version's state, the model's champion, and every audit row that changed this version."""
    history = []
    for row in governance.history(name):
        if version not in versions_touched(row):
            continue
        before, after = fields_of(row.before), fields_of(row.after)
        history.append(
            {
                "seq": row.seq,
                "time": row.time,
                "version": (split_object(row.object) or ("", None))[1],
                "action": row.action,
                "actor": after.get("by") or (after.get("author") or {}).get("name") or row.actor,
                "role": ROLE_OF_ACTION.get(row.action),
                "before": before,
                "after": {key: value for key, value in after.items() if key in _SHOWN},
                "note": row.reason,
                "gates": after.get("gates"),
            }
        )
    champion = governance.champion(name)
    return {
        "state": governance.state(governance.registry.version(name, version)),
        "champion": champion.version if champion is not None else None,
        "audit_intact": not governance.audit.verify(),
        "as_of": history[-1]["time"] if history else None,
        "history": history,
    }


def refresh_card(
    project_dir: Path, name: str, version: int | str, *, governance: Governance
) -> Path:
    """Re-render a version's stored card with its current state and audit history.

    ``governance`` is the project's (opened with its spec's settings); returns the HTML path.
    """
    info = governance.registry.version(name, version)
    folder = card_dir(project_dir, info.name, info.version)
    card, plots = read_model_card(folder)
    card["lifecycle"] = lifecycle_section(governance, info.name, info.version)
    html_path, _ = write_model_card(card, plots, folder)
    return html_path
