"""The keel command as a user types it: init, run, validate, models list/show."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from keel.cli.main import app

pytestmark = pytest.mark.slow


def _churn_table(rows: int = 1500, seed: int = 3) -> pd.DataFrame:
    """A dataset Keel has never seen: text codes, a date, a yes/no label."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, rows)
    plan = rng.choice(["basic", "plus", "premium"], rows, p=[0.5, 0.3, 0.2])
    monthly = (
        20 + 30 * (plan == "plus") + 60 * (plan == "premium") + rng.normal(0, 5, rows)
    ).round(2)
    tickets = rng.poisson(1.0, rows)
    signup = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, rows), unit="D")
    margin = 0.5 - 0.05 * tenure + 0.6 * tickets + 0.01 * monthly + rng.normal(0, 1, rows)
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(rows)],
            "signup_date": signup.strftime("%Y-%m-%d"),
            "tenure_months": tenure,
            "plan": plan,
            "monthly_fee": monthly,
            "support_tickets": tickets,
            "churned": np.where(margin > 0, "yes", "no"),
        }
    )


def test_init_writes_a_spec_that_run_trains_end_to_end(
    tmp_path: Path, mlflow_template: Path
) -> None:
    data = tmp_path / "churn.parquet"
    _churn_table().to_parquet(data)
    spec_path = tmp_path / "keel.yaml"
    (tmp_path / ".keel").mkdir()
    shutil.copy(mlflow_template, tmp_path / ".keel" / "mlflow.db")
    runner = CliRunner()

    init = runner.invoke(app, ["init", str(data), "--output", str(spec_path)])
    assert init.exit_code == 0, init.output + init.stderr
    spec = yaml.safe_load(spec_path.read_text())
    assert spec["target"] == {"column": "churned", "positive": "yes"}
    assert spec["data"]["id_column"] == "customer_id"
    assert spec["data"]["source"] == "churn.parquet"
    assert spec["reviewed"] is False and spec["reasons"] == {"texts": {}}
    assert "set `reviewed: true`" in " ".join(init.output.split())

    again = runner.invoke(app, ["init", str(data), "--output", str(spec_path)])
    assert again.exit_code == 2
    assert "--force" in again.stderr

    run = runner.invoke(app, ["run", str(spec_path), "-q"])
    assert run.exit_code == 0, run.output + run.stderr
    assert "Registered churn version 1" in " ".join(run.output.split())
    assert (tmp_path / ".keel" / "cards" / "churn" / "v1" / "model_card.html").is_file()
    card = json.loads(
        (tmp_path / ".keel" / "cards" / "churn" / "v1" / "model_card.json").read_text()
    )
    review = next(g for g in card["gates"] if g["name"] == "spec_reviewed")
    assert review["passed"] is False and card["lifecycle"]["state"] == "candidate"

    listing = runner.invoke(app, ["models", "list", "--spec", str(spec_path)])
    assert listing.exit_code == 0, listing.stderr
    assert "churn" in listing.output

    show = runner.invoke(app, ["models", "show", "churn", "1", "--spec", str(spec_path)])
    assert show.exit_code == 0, show.stderr
    shown = json.loads(show.output)
    assert shown["version"] == 1 and shown["integrity"].startswith("ok")


def test_init_takes_its_protected_words_and_calendar_parts_from_options(tmp_path: Path) -> None:
    data = tmp_path / "churn.parquet"
    _churn_table(rows=200).to_parquet(data)
    spec_path = tmp_path / "keel.yaml"
    runner = CliRunner()

    made = runner.invoke(
        app,
        [
            *("init", str(data), "-o", str(spec_path)),
            *("--protected-words", "plan, monthly fee", "--calendar", "weekend,day_of_week"),
        ],
    )

    assert made.exit_code == 0, made.output + made.stderr
    spec = yaml.safe_load(spec_path.read_text())
    assert spec["protected"] == ["plan", "monthly_fee"]  # the list given replaces the default
    assert spec["features"]["calendar"] == {
        "time_weekend": "weekend",
        "time_day_of_week": "day_of_week",
    }
    bad = runner.invoke(
        app, ["init", str(data), "-o", str(spec_path), "--force", "--calendar", "noon"]
    )
    assert bad.exit_code == 3 and "['noon'] are not known" in " ".join(bad.stderr.split())
    empty = runner.invoke(
        app, ["init", str(data), "-o", str(spec_path), "--force", "--protected-words", " , "]
    )
    assert empty.exit_code == 2 and "--protected-words" in empty.stderr


def test_models_show_reports_a_tampered_model(loans_project: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["train", str(loans_project), "-q"]).exit_code == 0
    from keel.registry.store import Registry

    info = Registry.for_project(loans_project.parent / ".keel").version("loans", 1)
    folder = Path(info.source.removeprefix("file://"))
    body = next(p for p in folder.iterdir() if p.name != "model.json")
    body.write_bytes(body.read_bytes().replace(b"0", b"1", 1))

    show = runner.invoke(app, ["models", "show", "loans", "1", "--spec", str(loans_project)])
    assert show.exit_code == 0
    assert "FAILED" in json.loads(show.output)["integrity"]


def test_validate_names_each_broken_rule_and_writes_a_report(loans_project: Path) -> None:
    frame = pd.read_csv(loans_project.parent / "data.csv")
    frame.loc[0, "region"] = "mars"
    frame.to_csv(loans_project.parent / "data.csv", index=False)
    report = loans_project.parent / "report.json"

    result = CliRunner().invoke(app, ["validate", str(loans_project), "--report", str(report)])

    assert result.exit_code == 4
    assert (
        "column 'region', rule allowed: ['north', 'south', 'east', 'west']: 1 row(s) fail"
        in result.stderr
    )
    failures = json.loads(report.read_text())["failures"]
    assert failures == [
        {
            "column": "region",
            "rule": "allowed: ['north', 'south', 'east', 'west']",
            "count": 1,
            "sample": [{"row": 0, "value": "mars"}],
            "detail": "",
        }
    ]


def test_models_list_names_an_unknown_model_with_a_suggestion(loans_project: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["train", str(loans_project), "-q"]).exit_code == 0
    result = runner.invoke(app, ["models", "show", "laons", "--spec", str(loans_project)])
    assert result.exit_code == 6
    assert "Did you mean 'loans'?" in result.stderr


def test_run_refuses_a_cluster_it_cannot_use_before_training(loans_project: Path) -> None:
    result = CliRunner().invoke(app, ["run", str(loans_project), "-q", "--cluster", "my-laptop"])

    assert result.exit_code == 11
    assert (
        "--cluster 'my-laptop' is neither 'local' nor a scheduler address"
        in result.output + result.stderr
    )
    assert not (loans_project.parent / ".keel" / "cards").exists()


def test_demo_runs_the_credit_example_with_its_card(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`keel demo` (what `make demo` runs) hands the credit example to the full flow.

    The flow itself is tested apart.
    """
    import keel.lifecycle.run
    from keel.errors import KeelError

    calls = []

    def flow(spec, **options):
        calls.append(
            (spec.project, options["project_dir"], options["with_card"], options["author"])
        )
        raise KeelError("stopped before training")

    monkeypatch.setattr(keel.lifecycle.run, "run_project", flow)
    result = CliRunner().invoke(app, ["demo", "--project-dir", str(tmp_path / ".keel"), "-q"])
    assert result.exit_code == 1 and "stopped before training" in result.stderr
    assert calls == [("credit_default", tmp_path / ".keel", True, "keel-demo")]
