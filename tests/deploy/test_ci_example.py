"""examples/ci: the GitHub Actions workflow is schema-valid and calls only real keel commands."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from keel.cli.main import app

WORKFLOW = Path(__file__).resolve().parents[2] / "examples" / "ci" / "github-actions.yml"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    """The vendored GitHub workflow schema (offline) applied to ``path``."""
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _keel_calls(workflow: dict) -> list[list[str]]:
    """Every `keel ...` command line in the workflow's run steps, as words after `keel`."""
    calls = []
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            script = step.get("run", "").replace("\\\n", " ")
            for line in script.splitlines():
                words = shlex.split(line, comments=True)
                if "keel" in words:
                    calls.append(words[words.index("keel") + 1 :])
    return calls


def _resolve(words: list[str]) -> tuple[Any, list[str]]:
    """The command the words name (through groups, by their ``commands``) and its options."""
    command = typer.main.get_command(app)
    rest = list(words)
    while getattr(command, "commands", None) and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        found = command.commands.get(name)
        assert found is not None, f"keel has no command '{name}' (in: keel {' '.join(words)})"
        command = found
    return command, [w.split("=")[0] for w in rest if w.startswith("-")]


def test_the_workflow_validates_against_the_github_workflow_schema() -> None:
    result = _validate(WORKFLOW)

    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_workflow_fails_the_same_check(tmp_path: Path) -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    del workflow["jobs"]["check"]["runs-on"]  # a job must say where it runs
    workflow["jobs"]["candidate"]["timeout-minutes"] = "soon"
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump(workflow, sort_keys=False))

    result = _validate(broken)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "jobs.check" in result.stdout or "jobs.check" in result.stderr


def test_every_keel_command_and_flag_in_the_workflow_exists() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    calls = _keel_calls(workflow)

    assert [c[0] for c in calls] == ["check", "run", "audit"]  # PR check, merge, registration
    for words in calls:
        command, flags = _resolve(words)
        known = {opt for param in command.params for opt in param.opts + param.secondary_opts}
        assert set(flags) <= known, f"keel {' '.join(words)}: unknown {set(flags) - known}"


def test_the_flag_check_catches_a_renamed_flag() -> None:
    command, flags = _resolve(["check", "keel.yaml", "--sample-size", "10"])
    known = {opt for param in command.params for opt in param.opts}

    assert "--sample-size" in flags and "--sample-size" not in known
    with pytest.raises(AssertionError, match="no command 'deploy'"):
        _resolve(["deploy", "keel.yaml"])


def test_promotion_is_left_to_the_governance_service() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    words = {w for call in _keel_calls(workflow) for w in call}

    assert not words & {"approve", "promote", "rollback", "policy"}
    assert workflow["jobs"]["candidate"]["env"]["KEEL_TOKEN"] == "${{ secrets.KEEL_CI_TOKEN }}"
    assert "Promotion to production is NOT in CI" in WORKFLOW.read_text()
