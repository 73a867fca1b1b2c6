"""Approvals, promotions and rollbacks after the run reach the model card, without retraining."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from keel.cli.main import app
from keel.errors import CardError, RegistryError
from keel.lifecycle.card_refresh import refresh_card
from keel.registry.project import ProjectStore
from keel.spec import load_spec

from people import enrol

pytestmark = pytest.mark.slow


def _quick(spec_path: Path) -> list[str]:
    """Make the loans spec train in seconds; returns the CLI's --spec option for it."""
    raw = yaml.safe_load(spec_path.read_text())
    raw["tuning"] = {"trials": 1}
    raw["models"] = {"families": ["lightgbm"]}
    spec_path.write_text(yaml.safe_dump(raw))
    return ["--spec", str(spec_path)]


def _invoke(*args: str, token: str = "") -> Any:
    result = CliRunner().invoke(app, list(args), env={"KEEL_TOKEN": token})
    assert result.exit_code == 0, result.output + result.stderr
    return result


def _card(spec_path: Path, version: int) -> tuple[dict[str, Any], str]:
    folder = spec_path.parent / ".keel" / "cards" / "loans" / f"v{version}"
    return json.loads((folder / "model_card.json").read_text()), (
        folder / "model_card.html"
    ).read_text()


def test_cli_transitions_update_the_history_and_state_of_every_card_they_touch(
    loans_project: Path,
) -> None:
    spec = _quick(loans_project)
    tokens = enrol(loans_project.parent / ".keel").tokens
    _invoke("run", str(loans_project), "-q", token=tokens["ana"])

    approve = _invoke(
        "approve", "1", "--note", "Checked reasons & fairness", *spec, token=tokens["vera"]
    )
    assert "model card updated" in approve.output
    card, html = _card(loans_project, 1)
    assert card["lifecycle"]["state"] == "approved"
    assert [(r["action"], r["actor"], r["role"]) for r in card["lifecycle"]["history"]] == [
        ("register", "ana", "developer"),
        ("approve", "vera", "validator"),
    ]
    assert card["lifecycle"]["history"][1]["note"] == "Checked reasons & fairness"
    assert '<span class="state">approved</span>' in html
    assert (
        "<td>approve</td><td>vera</td><td>validator</td>" in html
        and "Checked reasons &amp; fairness" in html
    )

    _invoke("promote", "1", "--note", "first release", *spec, token=tokens["dan"])
    card, html = _card(loans_project, 1)
    assert (card["lifecycle"]["state"], card["lifecycle"]["champion"]) == ("champion", 1)
    assert "state: approved -&gt; champion; champion: — -&gt; 1" in html

    _invoke("train", str(loans_project), "-q", token=tokens["ana"])  # version 2, without a card
    _invoke("approve", "2", "--note", "ok", *spec, token=tokens["vera"])
    promote = CliRunner().invoke(app, ["promote", "2", *spec], env={"KEEL_TOKEN": tokens["dan"]})
    assert promote.exit_code == 0, promote.stderr
    assert "version 2: card not updated" in promote.stderr
    card, html = _card(loans_project, 1)
    assert (card["lifecycle"]["state"], card["lifecycle"]["champion"]) == ("retired", 2)
    last = card["lifecycle"]["history"][-1]
    assert (last["action"], last["version"], last["before"]["champion"]) == ("promote", 2, 1)

    _invoke("rollback", "--note", "v2 misroutes applications", *spec, token=tokens["dan"])
    card, html = _card(loans_project, 1)
    assert (card["lifecycle"]["state"], card["lifecycle"]["champion"]) == ("champion", 1)
    assert [r["action"] for r in card["lifecycle"]["history"]] == [
        "register",
        "approve",
        "promote",
        "promote",
        "rollback",
    ]
    assert "v2 misroutes applications" in html and card["lifecycle"]["audit_intact"] is True


def test_keel_card_rerenders_on_demand_and_refuses_a_version_without_a_card(
    loans_project: Path,
) -> None:
    spec = _quick(loans_project)
    _invoke("run", str(loans_project), "-q")
    _invoke("train", str(loans_project), "-q")
    _, html = _card(loans_project, 1)

    shown = _invoke("card", "loans", "1", *spec)
    assert "model_card.html" in shown.output
    assert _card(loans_project, 1)[1] == html  # nothing happened since the run: the same bytes

    folder = loans_project.parent / ".keel"
    governance = ProjectStore.of(load_spec(loans_project), folder).governance(writer=False)
    with pytest.raises(
        CardError, match=r"no stored model card to render in .*cards/loans/v2: model_card\.json"
    ):
        refresh_card(folder, "loans", 2, governance=governance)
    missing = CliRunner().invoke(app, ["card", "loans", "2", *spec])
    assert missing.exit_code == 10
    assert "CardError" in missing.stderr and "`keel run` writes a complete one" in " ".join(
        missing.stderr.split()
    )
    with pytest.raises(RegistryError, match=r"model 'loans' has no version 9; versions: \[1, 2\]"):
        refresh_card(folder, "loans", 9, governance=governance)
