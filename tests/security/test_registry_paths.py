"""Registry names cannot steer files outside the project directory (issue 15, finding 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.errors import RegistryError, SpecError
from keel.registry.store import Registry
from keel.spec import parse_spec

from factories import loans_spec


@pytest.mark.parametrize("key", ["experiment", "model_name"])
@pytest.mark.parametrize(
    "value", ["/tmp/elsewhere", "../../outside", "a/../../b", "..", "x\\..\\y"]
)
def test_a_registry_name_that_is_a_path_is_refused_by_the_spec(key: str, value: str) -> None:
    raw = loans_spec("data.csv", registry={key: value})
    with pytest.raises(SpecError, match=f"registry.{key}"):
        parse_spec(raw)


@pytest.mark.parametrize("name", ["/tmp/keel-escape", "../escape", "."])
def test_the_registry_never_puts_an_experiments_artifacts_outside_its_root(
    tmp_path: Path, mlflow_template: Path, name: str
) -> None:
    import shutil

    folder = tmp_path / ".keel"
    folder.mkdir()
    shutil.copy(mlflow_template, folder / "mlflow.db")
    registry = Registry.for_project(folder)
    with pytest.raises(RegistryError, match="outside the project's"):
        registry.experiment_id(name)
    assert not Path("/tmp/keel-escape").exists() and not (tmp_path / "escape").exists()
