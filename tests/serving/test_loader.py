"""The server loads the champion through the registry's hash check, and says what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.errors import IntegrityError, RegistryError
from keel.lifecycle.run import run_project
from keel.registry.store import Registry
from keel.serving.loader import load_alias
from keel.spec import load_spec

pytestmark = pytest.mark.slow


def test_load_alias_serves_the_champion_and_refuses_tampered_files(loans_project: Path) -> None:
    project_dir = loans_project.parent / ".keel"
    run_project(load_spec(loans_project), project_dir=project_dir, author="ana", with_card=False)
    registry = Registry.for_project(project_dir)

    with pytest.raises(RegistryError, match="no version with alias 'champion'"):
        load_alias(registry, "loans")
    registry.set_alias("loans", "champion", 1)
    engine = load_alias(registry, "loans")
    source = Path(registry.version("loans", 1).source.removeprefix("file://"))
    model_file = next(p for p in source.iterdir() if p.name != "model.json")
    model_file.write_bytes(model_file.read_bytes() + b"\n")

    assert (engine.name, engine.version) == ("loans", 1)
    with pytest.raises(IntegrityError, match="sha256"):
        load_alias(registry, "loans")
