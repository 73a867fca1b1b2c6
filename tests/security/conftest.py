"""A project whose 'loans' champion a real `keel serve` can answer with.

It is for the attacks on the server.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from keel.spec import parse_spec
from keel.training.trainer import train_model

from factories import loans_spec, make_loans, register_version
from people import crown, enrol
from server_process import Server, serving


@pytest.fixture(scope="session")
def champion_project(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Path:
    """A project folder (.keel) with one logistic 'loans' version, approved and promoted."""
    folder = tmp_path_factory.mktemp("served") / ".keel"
    folder.mkdir()
    shutil.copy(mlflow_template, folder / "mlflow.db")
    raw = loans_spec("unused.csv", tuning={"trials": 1}, models={"families": ["logistic"]})
    train_model(make_loans(rows=600, seed=3), parse_spec(raw)).model.save(folder.parent / "model")
    people = enrol(folder)
    register_version(people.service.governance, folder.parent / "model", author=people.dev)
    crown(people, "loans", 1)
    return folder


@pytest.fixture(scope="session")
def served(champion_project: Path) -> Iterator[Server]:
    """`keel serve` with its default limits, shared by the tests that only send it requests."""
    with serving(champion_project, "--watch-seconds", "0") as server:
        yield server
