"""Lifecycle state, derived from the audit log alone (pure).

The audit log is the one source of truth: replaying its rows in order gives every
version's state, the champion and challenger of every model, and the governance policy in
force. MLflow tags and aliases only mirror this; nothing here reads them.

Rows and what they change (``object`` is ``<model>/v<version>`` unless said):

- ``register``: a version is born ``validated`` or ``candidate``, with its author (an
  authenticated user id, or none), its gate thresholds and measures;
- ``approve`` / ``reject``: ``approved`` (with optional conditions) or ``rejected``;
- ``promote``: the version becomes ``champion``; the champion before it is ``retired``;
- ``rollback``: the previous champion is restored and the current one ``retired``;
- ``challenger``: the model's challenger (scored in the shadow) is set or cleared;
- ``policy`` (object ``policy``): a new governance policy version.
Any other action (``retrain``, ``refused``, ``export``, ``user.*``, ``key.*``) changes no model
state.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from keel.registry.audit import AuditRow

POLICY_OBJECT = "policy"


@dataclass(frozen=True)
class Policy:
    """The governance policy a validator owns: gate floors, separation of duties, auto-promotion.

    ``thresholds`` are gate names of :mod:`keel.evaluation.gates` (``min_auc``,
    ``min_adverse_impact_ratio``, ...); a spec may only tighten them.
    ``deployer_may_approve`` lets the approver of a version also promote it (never its author).
    ``auto_promote`` names the models whose retraining policy may promote a better challenger.
    """

    version: int = 0
    thresholds: dict[str, float] = field(default_factory=dict)
    deployer_may_approve: bool = False
    auto_promote: tuple[str, ...] = ()
    set_by: str | None = None  # the actor of the policy row

    def to_dict(self) -> dict[str, Any]:
        """The policy's settings as plain JSON (what a ``policy`` audit row holds)."""
        return {
            "thresholds": dict(sorted(self.thresholds.items())),
            "deployer_may_approve": self.deployer_may_approve,
            "auto_promote": sorted(self.auto_promote),
        }


@dataclass(frozen=True)
class VersionState:
    """One version as the audit log has it."""

    version: int
    state: str
    author_id: str | None  # None: registered without an authenticated user
    author: str  # display name (or the unverified name it was registered under)
    thresholds: dict[str, float] = field(default_factory=dict)
    measures: dict[str, Any] = field(default_factory=dict)
    gates: list[dict[str, Any]] = field(default_factory=list)
    approver_id: str | None = None
    conditions: str | None = None
    registered_seq: int = 0


@dataclass
class ModelState:
    """Every version of one model, its champion, the champions before it, and its challenger."""

    name: str
    versions: dict[int, VersionState] = field(default_factory=dict)
    champions: list[int] = field(default_factory=list)  # promotion stack; the last is the champion
    challenger: int | None = None

    @property
    def champion(self) -> int | None:
        """The version the audit log made champion, if any."""
        return self.champions[-1] if self.champions else None


@dataclass
class Ledger:
    """What the whole audit log says: every model's state and the policy in force."""

    models: dict[str, ModelState] = field(default_factory=dict)
    policy: Policy = field(default_factory=Policy)

    def model(self, name: str) -> ModelState:
        """The state of ``name`` (empty when the log never mentions it)."""
        return self.models.get(name) or ModelState(name)


def fields_of(text: str) -> dict[str, Any]:
    """An audit row's before/after JSON as a dict (empty when there is none)."""
    value = json.loads(text) if text else None
    return value if isinstance(value, dict) else {}


def split_object(obj: str) -> tuple[str, int] | None:
    """('credit', 3) for 'credit/v3'; None for objects that are not versions."""
    name, sep, version = obj.rpartition("/v")
    return (name, int(version)) if sep and version.isdigit() else None


def replay(rows: Iterable[AuditRow]) -> Ledger:
    """Fold the audit rows, oldest first, into every model's state and the current policy."""
    ledger = Ledger()
    for row in rows:
        after = fields_of(row.after)
        if row.action == "policy" and row.object == POLICY_OBJECT:
            ledger.policy = Policy(
                ledger.policy.version + 1,
                dict(after.get("thresholds", {})),
                bool(after.get("deployer_may_approve", False)),
                tuple(after.get("auto_promote", ())),
                row.actor,
            )
            continue
        target = split_object(row.object)
        if target is None:
            continue
        name, number = target
        model = ledger.models.setdefault(name, ModelState(name))
        _apply(model, row, number, after)
    return ledger


def _apply(model: ModelState, row: AuditRow, number: int, after: dict[str, Any]) -> None:
    versions = model.versions
    if row.action == "register":
        author = after.get("author") or {}
        versions[number] = VersionState(
            number,
            after.get("state", "candidate"),
            author.get("id"),
            author.get("name", row.actor),
            dict(after.get("thresholds", {})),
            dict(after.get("measures", {})),
            list(after.get("gates", [])),
            registered_seq=row.seq,
        )
    elif number not in versions:
        # A row about a version the log never registered: named by the cross-check, changes
        # nothing.
        return
    elif row.action == "approve":
        versions[number] = replace(
            versions[number],
            state="approved",
            approver_id=after.get("approver_id"),
            conditions=after.get("conditions"),
        )
    elif row.action == "reject":
        versions[number] = replace(versions[number], state="rejected")
        if model.challenger == number:
            model.challenger = None
    elif row.action == "promote":
        if model.champion is not None and model.champion in versions:
            versions[model.champion] = replace(versions[model.champion], state="retired")
        model.champions.append(number)
        versions[number] = replace(versions[number], state="champion")
        if model.challenger == number:
            model.challenger = None
    elif row.action == "rollback" and model.champions:
        current = model.champions.pop()
        versions[current] = replace(versions[current], state="retired")
        while model.champions and model.champions[-1] != number:
            model.champions.pop()
        if not model.champions:
            model.champions.append(number)
        versions[number] = replace(versions[number], state="champion")
    elif row.action == "challenger":
        model.challenger = after.get("challenger")
