"""`keel retrain`, fraud example: the policy promotes a better challenger, refuses a degraded one.

Three months of the handbook's real transactions (July to September 2018). The champion is
a logistic model trained in mid-August; the retrained challengers use the data known at the
end of September, so their test week is the newest one, which neither model was trained on.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from keel.cli.main import app
from keel.errors import SpecError
from keel.lifecycle.retrain import retrain
from keel.lifecycle.run import run_project
from keel.registry.governance import Governance
from keel.spec import load_spec

from factories import applied_over_time, loans_spec, make_loans, write_project
from people import crown, enrol

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "card_fraud"
DATA = EXAMPLE / "data" / "fraud_handbook_simulated_raw.parquet"


def _spec(
    folder: Path, name: str, source: Path, *, without_terminal: bool = False, **changes
) -> Path:
    raw = yaml.safe_load((EXAMPLE / "keel.yaml").read_text())
    if without_terminal:  # the strongest signals, the terminals' recent fraud, are gone
        del raw["features"]["windows"]["terminal"]
        raw["reasons"]["texts"] = {
            k: v for k, v in raw["reasons"]["texts"].items() if not k.startswith("terminal_")
        }
    raw["data"]["source"] = str(source)
    raw["tuning"]["trials"] = 2
    raw["split"].update(train_start="2018-08-15", validation_folds=1)
    raw["models"]["lightgbm"].update(
        learning_rate={"low": 0.05, "high": 0.15, "log": True}, max_rounds=300
    )
    raw["retraining"] = {
        "auto_promote": True,
        "approved_by": "model-risk-committee",
        "min_improvement": 0.01,
    }
    for key, value in changes.items():
        raw[key] = {**raw.get(key, {}), **value}
    path = folder / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.slow
def test_retrain_promotes_a_better_challenger_and_refuses_a_degraded_one(
    tmp_path: Path, mlflow_template: Path
) -> None:
    source = tmp_path / "fraud_q3.parquet"
    frame = pd.read_parquet(DATA)
    frame[frame["TX_DATETIME"] >= "2018-07-01"].to_parquet(source, index=False)
    project = tmp_path / ".keel"
    project.mkdir()
    shutil.copy(mlflow_template, project / "mlflow.db")
    cli = CliRunner()

    people = enrol(project)

    def keel(*args: str, who: str = "ana") -> str:
        result = cli.invoke(
            app, [*args, "--project-dir", str(project)], env={"KEEL_TOKEN": people.tokens[who]}
        )
        assert result.exit_code == 0, result.output + result.stderr
        return result.output

    champion = _spec(tmp_path, "champion.yaml", source, models={"families": ["logistic"]})
    keel("train", str(champion), "-q")
    keel("approve", "1", "--note", "reviewed", "--spec", str(champion), who="vera")
    keel("promote", "1", "--spec", str(champion), who="dan")
    keel(
        "policy",
        "set",
        "--auto-promote",
        "card_fraud",
        "--note",
        "committee sign-off 2026-11",
        who="vera",
    )

    better = _spec(tmp_path, "challenger.yaml", source, models={"families": ["lightgbm"]})
    promoted = keel("retrain", str(better), "--as-of", "2018-09-30", "--no-card", "-q")
    assert "challenger card_fraud v2 against champion v1" in promoted and "promoted" in promoted

    degraded = _spec(
        tmp_path, "degraded.yaml", source, models={"families": ["lightgbm"]}, without_terminal=True
    )
    refused = keel("retrain", str(degraded), "--as-of", "2018-09-30", "--no-card", "-q")
    assert "challenger card_fraud v3 against champion v2" in refused and "refused" in refused

    governance = Governance.for_project(project)
    assert governance.champion("card_fraud").version == 2
    decisions = [row for row in governance.history("card_fraud") if row.action == "retrain"]
    assert [(row.object, json.loads(row.after)["decision"]) for row in decisions] == [
        ("card_fraud/v2", "promoted"),
        ("card_fraud/v3", "refused"),
    ]
    first, second = (json.loads(row.after) for row in decisions)
    assert first["window"] == second["window"]  # both judged on the same newest week
    assert first["average_precision"] > json.loads(decisions[0].before)["average_precision"] + 0.01
    assert second["average_precision"] < json.loads(decisions[1].before)["average_precision"]
    policy = [row for row in governance.history("card_fraud") if row.actor == "policy:v1"]
    assert [row.action for row in policy] == ["approve", "promote"]
    assert governance.registry.version("card_fraud", 3).tag("retrain_decision") == "refused"


def _loans_over_time(**changes) -> tuple[dict, pd.DataFrame]:
    """The loans spec and data with an application time every 4 hours from 2024.

    keel retrain needs a time split.
    """
    raw = loans_spec(
        "data.csv", models={"families": ["logistic"]}, gates={"min_auc": 0.5}, **changes
    )
    return applied_over_time(raw, make_loans(3000), "2024-01-01", "4h")


def test_a_better_challenger_without_automatic_promotion_waits_as_the_challenger(
    tmp_path: Path, mlflow_template: Path
) -> None:
    """A weak champion trained in the first year, a better challenger on data known a year later."""
    folder = tmp_path / "loans"
    raw, frame = _loans_over_time(features={"include": ["region"], "categorical": ["region"]})
    weak = write_project(folder, frame, raw)
    project = folder / ".keel"
    project.mkdir()
    shutil.copy(mlflow_template, project / "mlflow.db")
    first = load_spec(weak)
    people = enrol(project)
    run_project(
        first.model_copy(
            update={"data": first.data.model_copy(update={"until": pd.Timestamp("2024-10-01")})}
        ),
        project_dir=project,
        principal=people.dev,
    )
    crown(people, "loans", 1)
    governance = people.service.governance
    better = folder / "better.yaml"
    better.write_text(yaml.safe_dump(_loans_over_time()[0]))

    result = retrain(
        load_spec(better),
        project_dir=project,
        author="ana",
        as_of=pd.Timestamp("2025-05-01"),
        principal=people.dev,
    )

    assert (
        result.decision == "awaiting approval" and result.challenger_score > result.champion_score
    )
    assert (
        result.window["from"] >= "2025-01-01" and result.window["to"] < "2025-05-01"
    )  # after the champion's data
    assert governance.challenger("loans").version == 2
    assert governance.registry.alias("loans", "challenger").version == 2  # mirrored
    assert governance.champion("loans").version == 1
    card = json.loads((project / "cards" / "loans" / "v2" / "model_card.json").read_text())
    assert [row["action"] for row in card["lifecycle"]["history"]] == [
        "register",
        "challenger",
        "retrain",
    ]
    assert (
        "champion: 1 -&gt; 1"
        in (project / "cards" / "loans" / "v1" / "model_card.html").read_text()
    )
    logged = yaml.safe_load(
        Path(
            governance.registry._client.download_artifacts(
                governance.registry.version("loans", 2).run_id, "spec/keel.yaml", str(tmp_path)
            )
        ).read_text()
    )
    assert str(logged["data"]["until"]).startswith("2025-05-01")  # the run says which rows it read


def test_retrain_refuses_a_random_split(tmp_path: Path) -> None:
    spec = load_spec(write_project(tmp_path / "loans", make_loans(200), loans_spec("data.csv")))
    with pytest.raises(SpecError, match="needs a time split"):
        retrain(spec, project_dir=tmp_path / ".keel", author="ana")
