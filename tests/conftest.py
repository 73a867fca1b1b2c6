"""Shared fixtures: small synthetic projects and a pre-migrated MLflow store."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
import pytest
from factories import loans_spec, make_loans, write_project
from hypothesis import settings

# CI runs the same examples every time (a failure there reproduces); locally, Hypothesis explores.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its tables created once (migrations take ~10 s each time)."""
    from keel.registry.store import Registry

    folder = tmp_path_factory.mktemp("mlflow-template")
    registry = Registry.for_project(folder)
    registry.model_names()
    registry._client.get_experiment_by_name("none")
    return folder / "mlflow.db"


@pytest.fixture
def loans_project(tmp_path: Path, mlflow_template: Path) -> Path:
    """A project folder with loans data, its spec and a ready .keel store; returns the spec path."""
    spec_path = write_project(tmp_path / "loans", make_loans(), loans_spec("data.csv"))
    keel_dir = spec_path.parent / ".keel"
    keel_dir.mkdir()
    shutil.copy(mlflow_template, keel_dir / "mlflow.db")
    return spec_path
