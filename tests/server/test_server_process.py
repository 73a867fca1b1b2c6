"""The bank's set-up: one `keel server` process owns the audit key.

Developers and reviewers reach it by KEEL_SERVER with their own tokens, and their machines
never hold the key.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keel.cli.main import app

from people import enrol
from server_process import governance_server

pytestmark = pytest.mark.slow


def test_register_review_and_release_through_the_governance_service(
    loans_project: Path, tmp_path: Path
) -> None:
    project_dir = loans_project.parent / ".keel"
    people = enrol(project_dir)  # the service's own store: users, key and checkpoints live with it
    with governance_server(project_dir) as (url, _):
        no_key = tmp_path / "developer-has-no-key"

        def keel(*args: str, who: str) -> object:
            env = {
                "KEEL_SERVER": url,
                "KEEL_TOKEN": people.tokens[who],
                "KEEL_AUDIT_KEY": str(no_key),
            }
            return CliRunner().invoke(app, list(args), env=env)

        trained = keel("train", str(loans_project), "-q", who="ana")
        assert trained.exit_code == 0, trained.output
        assert "Author unverified" not in trained.output
        refused = keel("approve", "1", "--note", "mine", "--spec", str(loans_project), who="ana")
        assert refused.exit_code == 8 and "ana may not approve" in refused.stderr
        approved = keel(
            "approve", "1", "--note", "card read", "--spec", str(loans_project), who="vera"
        )
        assert approved.exit_code == 0, approved.stderr
        promoted = keel("promote", "1", "--spec", str(loans_project), who="dan")
        assert promoted.exit_code == 0 and "approved -> champion" in promoted.output
        verified = keel("audit", "verify", "--spec", str(loans_project), who="dan")
        assert verified.exit_code == 0 and "intact" in verified.output
        anonymous = CliRunner().invoke(
            app,
            ["promote", "1", "--spec", str(loans_project)],
            env={"KEEL_SERVER": url, "KEEL_TOKEN": ""},
        )
        assert anonymous.exit_code == 14
    assert not no_key.exists()  # no developer or reviewer process ever held (or made) a signing key
    history = [(row.action, row.actor) for row in people.service.governance.history("loans")]
    assert history == [
        ("register", people.dev.actor),
        ("refused", people.dev.actor),
        ("approve", people.val.actor),
        ("promote", people.dep.actor),
    ]
    assert os.environ.get("KEEL_SERVER") is None
