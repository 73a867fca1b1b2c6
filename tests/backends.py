"""The databases a registry test runs on: SQLite files, or a real PostgreSQL server.

Run as a script with a tracking URI, it creates MLflow's tables there (the PostgreSQL
template is migrated in a child process, so no pooled connection keeps it busy).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from keel.registry.governance import Governance

BACKENDS = [pytest.param("sqlite"), pytest.param("postgresql", marks=pytest.mark.postgres)]


@dataclass(frozen=True)
class Store:
    """Where one test's registry and governance tables live; artifacts stay in ``project_dir``."""

    project_dir: Path
    tracking_uri: str
    governance_uri: str

    def governance(self) -> Governance:
        """A Governance with its own registry client and audit engine over this store."""
        from keel.registry.governance import Governance

        return Governance.for_project(self.project_dir, self.tracking_uri, self.governance_uri)


def create_mlflow_tables(tracking_uri: str) -> None:
    """Run MLflow's migrations on an empty store (about 10 s on either backend)."""
    from keel.registry.store import Registry

    registry = Registry(tracking_uri)
    registry.model_names()
    registry._client.get_experiment_by_name("none")


if __name__ == "__main__":
    create_mlflow_tables(sys.argv[1])
