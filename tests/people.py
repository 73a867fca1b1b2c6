"""Authenticated test users in a project's governance store, and the governed way to a champion.

Tests never set an MLflow alias to make a version serve: they approve and promote it through
the governance layer as a validator and a deployer, as a bank's people would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher

from keel.registry.principal import Principal
from keel.registry.project import ProjectStore
from keel.server.service import GovernanceService

FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)  # argon2id, cheap enough for tests
PASSWORD = "correct horse battery staple"
ROLES = {"root": ["admin"], "ana": ["developer"], "vera": ["validator"], "dan": ["deployer"]}


@dataclass(frozen=True)
class People:
    """An admin, a developer, a validator and a deployer, with an API token each."""

    service: GovernanceService
    users: dict[str, Principal]
    tokens: dict[str, str]

    @property
    def dev(self) -> Principal:
        """The developer (ana), author of the versions tests register."""
        return self.users["ana"]

    @property
    def val(self) -> Principal:
        """The validator (vera)."""
        return self.users["vera"]

    @property
    def dep(self) -> Principal:
        """The deployer (dan)."""
        return self.users["dan"]


def open_service(
    project_dir: Path, tracking_uri: str | None = None, governance_uri: str | None = None
) -> GovernanceService:
    """The project's governance service (created when missing), with test-speed password hashing."""
    store = ProjectStore(project_dir, tracking_uri, governance_uri)
    return GovernanceService.open(store, create=True, hasher=FAST)


def enrol(
    project_dir: Path, tracking_uri: str | None = None, governance_uri: str | None = None
) -> People:
    """The four test users of a project (added on first call), each signed in with a fresh token."""
    service = open_service(project_dir, tracking_uri, governance_uri)
    if not service.users.list():
        admin = service.users.add("root", ROLES["root"], PASSWORD, by=None)
        for name, roles in ROLES.items():
            if name != "root":
                service.users.add(name, roles, PASSWORD, by=admin)
    users = {name: service.users.authenticate_password(name, PASSWORD) for name in ROLES}
    tokens = {name: service.users.create_token(user, label="test") for name, user in users.items()}
    return People(service, users, tokens)


def crown(people: People, name: str, version: int) -> None:
    """Approve (vera) and promote (dan) a version ana registered: the governed way to a champion."""
    governance = people.service.governance
    governance.approve(name, version, by=people.val, note="reviewed in a test")
    governance.promote(name, version, by=people.dep, note="released in a test")
