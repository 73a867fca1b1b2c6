"""Each command's help reads as written: no text lost to markup, no stray punctuation."""

from __future__ import annotations

import re

import click
import pytest
import typer
from typer.testing import CliRunner

from keel import __version__
from keel.cli.main import app


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += _commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


COMMANDS = _commands(typer.main.get_command(app))  # type: ignore[arg-type]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_shows_every_word_and_no_stray_punctuation(command: tuple[str, ...]) -> None:
    shown = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert not re.search(r"\s[.,;:](\s|$)", text), text  # what a swallowed "[default: ...]" leaves
    assert ".." not in text.replace("...", "")


def test_a_default_in_brackets_is_shown() -> None:
    shown = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    assert "[default: .keel beside the spec]" in " ".join(shown.output.split())
    assert len(COMMANDS) > 20


def test_keel_version() -> None:
    shown = CliRunner().invoke(app, ["--version"])
    assert shown.exit_code == 0 and shown.output.strip() == f"keel {__version__}"
