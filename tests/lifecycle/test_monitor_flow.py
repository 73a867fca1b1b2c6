"""`keel monitor`'s flow called from Python: keel.lifecycle.monitor.monitor_model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from keel.errors import RegistryError
from keel.lifecycle.monitor import monitor_model
from keel.lifecycle.run import run_project
from keel.monitoring.latest import judged_through, latest_path
from keel.registry.project import ProjectStore
from keel.spec import load_spec

from factories import applied_over_time, post_loans
from people import crown, enrol

pytestmark = pytest.mark.slow


def test_monitor_model_judges_the_champion_writes_the_report_and_moves_latest(
    loans_project: Path,
) -> None:
    data = loans_project.parent / "data.csv"
    raw, frame = applied_over_time(
        yaml.safe_load(loans_project.read_text()), pd.read_csv(data), "2025-01-01", "2h"
    )
    raw["monitoring"] = {"window": "day"}
    loans_project.write_text(yaml.safe_dump(raw))
    frame.to_csv(data, index=False)
    spec, folder = load_spec(loans_project), loans_project.parent / ".keel"
    people = enrol(folder)
    run_project(spec, project_dir=folder, principal=people.dev, with_card=False)
    governance = ProjectStore.of(spec, folder).governance(writer=False)
    with pytest.raises(RegistryError, match="the audit log gives model 'loans' no champion"):
        monitor_model(governance, folder, "loans", spec=spec)
    crown(people, "loans", 1)
    post_loans(folder, income_factor=0.5)
    stages: list[str] = []
    windows: list[tuple[int, int]] = []

    run = monitor_model(
        governance,
        folder,
        "loans",
        spec=spec,
        as_of=pd.Timestamp.now(tz="UTC").tz_localize(None).normalize() + pd.Timedelta(days=1),
        on_stage=stages.append,
        on_window=lambda done, total: windows.append((done, total)),
    )

    assert run.alerted and {a.subject for a in run.new if a.kind == "drift"} >= {"income"}
    alerts_file = run.html.parent / "alerts.jsonl"
    assert run.html.is_file() and alerts_file.read_text().count("\n") == len(run.lines)
    assert judged_through(latest_path(folder, "loans")) == run.report.judged_through()
    assert stages[0].startswith("reading the events of loans v1")
    assert stages[-1] == "writing the report"
    assert windows and windows[-1][0] == windows[-1][1] == len(run.report.windows)
