"""`keel monitor` over a real prediction log: the report, alert lines, webhook and exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from keel.cli.care import ALERT_EXIT
from keel.cli.main import app
from keel.lifecycle.run import run_project
from keel.registry.governance import Governance
from keel.registry.store import Registry
from keel.serving.app import create_app
from keel.serving.loader import load_alias
from keel.spec import load_spec

from factories import applied_over_time, post_loans
from people import crown, enrol


@pytest.mark.parametrize("income_factor, alerts", [(1.0, False), (0.5, True)])
def test_keel_monitor_reports_and_alerts_only_on_a_shift(
    loans_project: Path, webhook, income_factor: float, alerts: bool
) -> None:
    url, received = webhook
    data = loans_project.parent / "data.csv"
    raw, frame = applied_over_time(
        yaml.safe_load(loans_project.read_text()), pd.read_csv(data), "2025-01-01", "2h"
    )
    raw["monitoring"] = {
        "window": "day",
        "alerts": {"webhook": url, "allowed_hosts": ["127.0.0.1"]},
    }
    loans_project.write_text(yaml.safe_dump(raw))
    frame.to_csv(data, index=False)
    project_dir = loans_project.parent / ".keel"
    people = enrol(project_dir)
    run_project(
        load_spec(loans_project), project_dir=project_dir, principal=people.dev, with_card=False
    )
    crown(people, "loans", 1)
    post_loans(project_dir, income_factor=income_factor)
    out = loans_project.parent / "report"

    tomorrow = (pd.Timestamp.now(tz="UTC").normalize() + pd.Timedelta(days=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    command = [
        "monitor",
        "--spec",
        str(loans_project),
        "--project-dir",
        str(project_dir),
        "--as-of",
        tomorrow,
    ]

    result = CliRunner().invoke(app, [*command, "--out", str(out), "--retrain-on-alert"])

    assert result.exit_code == (ALERT_EXIT if alerts else 0), result.output + result.stderr
    html = (out / "monitoring.html").read_text()
    assert "loans" in html and html.count("<img") >= 3
    report = json.loads((out / "monitoring.json").read_text())
    assert (
        sum(w["rows"] for w in report["windows"]) == 400
        and report["windows"][-1]["realized"] is None
    )
    lines = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
    assert (
        json.loads((project_dir / "monitoring" / "loans" / "latest.json").read_text())["as_of"]
        == report["as_of"]
    )
    latest = project_dir / "monitoring" / "loans" / "latest.json"
    scrape = (
        TestClient(
            create_app(
                load_alias(Governance.for_project(project_dir, writer=False), "loans"),
                monitoring_file=latest,
            )
        )
        .get("/metrics")
        .text
    )
    income = next(f for f in report["windows"][-1]["drift"]["features"] if f["name"] == "income")
    assert f'keel_drift_psi{{feature="income"}} {income["psi"]}' in scrape
    assert (
        f'keel_monitoring_alerts{{severity="alert"}} '
        f"{float(sum(a['severity'] == 'alert' for a in lines))}" in scrape
    )
    assert 'keel_auc{kind="estimated"}' in scrape and 'keel_auc{kind="realized"}' not in scrape
    versions = [v.version for v in Registry.for_project(project_dir).versions("loans")]
    if alerts:
        assert {"income", "probability"} <= {
            line["subject"] for line in lines if line["kind"] == "drift"
        }
        assert received and received[0]["alerts"] == report["alerts"]
        assert '"kind": "drift"' in result.output
        # --retrain-on-alert trained a challenger and judged it against the champion.
        assert (
            sorted(versions) == [1, 2]
            and "challenger loans v2 against champion v1" in result.output
        )
        # The next run has nothing new to say:
        # the same window's alerts are not sent or raised again.
        again = CliRunner().invoke(app, [*command, "--out", str(out.parent / "again")])
        assert (
            again.exit_code == 0
            and len(received) == 1
            and not (out.parent / "again" / "alerts.jsonl").read_text()
        )
    else:
        assert lines == [] and received == [] and versions == [1]


def test_retrain_on_alert_is_refused_at_once_for_a_spec_that_cannot_be_retrained(
    loans_project: Path,
) -> None:
    result = CliRunner().invoke(
        app, ["monitor", "--spec", str(loans_project), "--retrain-on-alert"]
    )
    assert result.exit_code == 2 and "needs a time split" in result.output + result.stderr
