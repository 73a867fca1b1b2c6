"""A `keel monitor --as-of` far in the future cannot mute the alerts of the weeks that follow.

Issue 15, finding 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from keel.cli.main import app
from keel.lifecycle.run import run_project
from keel.spec import load_spec

from factories import applied_over_time, make_loans
from people import crown, enrol

pytestmark = pytest.mark.slow
ALERT_EXIT = 13


def _scored(model, start: str, weeks: int, *, shifted: bool) -> pd.DataFrame:
    rows = make_loans(400 * weeks, seed=7 if shifted else 5)
    if shifted:
        rows["income"] = (rows["income"] * 0.5).round(0)
    rows["applied"] = pd.date_range(
        start, periods=len(rows), freq=f"{7 * 24 * 60 // 400}min"
    ).astype(str)
    return rows.assign(probability=model.predict_proba(rows))


def test_a_future_as_of_moves_the_state_only_as_far_as_the_data_it_judged(
    loans_project: Path,
) -> None:
    raw, frame = applied_over_time(
        yaml.safe_load(loans_project.read_text()),
        pd.read_csv(loans_project.parent / "data.csv"),
        "2025-01-01",
        "2h",
    )
    raw["monitoring"] = {"window": "week"}
    loans_project.write_text(yaml.safe_dump(raw))
    frame.to_csv(loans_project.parent / "data.csv", index=False)
    project_dir = loans_project.parent / ".keel"
    people = enrol(project_dir)
    run_project(
        load_spec(loans_project), project_dir=project_dir, principal=people.dev, with_card=False
    )
    crown(people, "loans", 1)
    model, _ = people.service.governance.registry.load_model("loans", 1)
    scored = loans_project.parent / "scored.parquet"
    calm = _scored(model, "2026-01-05", 2, shifted=False)  # two calm weeks
    calm.to_parquet(scored)

    def monitor(as_of: str) -> object:
        return CliRunner().invoke(
            app,
            [
                "monitor",
                "--spec",
                str(loans_project),
                "--scored",
                str(scored),
                "--as-of",
                as_of,
                "--out",
                str(loans_project.parent / as_of[:10]),
            ],
        )

    muted = monitor("2030-01-01T00:00:00Z")  # a typo, or an attempt to silence what follows
    assert muted.exit_code == 0, muted.output
    latest = json.loads((project_dir / "monitoring" / "loans" / "latest.json").read_text())
    assert latest["judged_through"].startswith(
        "2026-01-19"
    )  # the close of the last week with data, not 2030

    pd.concat([calm, _scored(model, "2026-01-19", 1, shifted=True)]).to_parquet(
        scored
    )  # a drifting third week
    later = monitor("2026-01-26T00:00:00Z")
    assert later.exit_code == ALERT_EXIT, later.output
    assert '"kind": "drift"' in later.output and "income" in later.output
