"""`keel retrain` on the fraud example: a better challenger is promoted by the policy, a degraded one refused.

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
from keel.registry.governance import Governance

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "card_fraud"
DATA = EXAMPLE / "data" / "fraud_handbook_simulated_raw.parquet"


def _spec(folder: Path, name: str, source: Path, *, without_terminal: bool = False, **changes) -> Path:
    raw = yaml.safe_load((EXAMPLE / "keel.yaml").read_text())
    if without_terminal:  # the strongest signals, the terminals' recent fraud, are gone
        del raw["features"]["windows"]["terminal"]
        raw["reasons"]["texts"] = {k: v for k, v in raw["reasons"]["texts"].items() if not k.startswith("terminal_")}
    raw["data"]["source"] = str(source)
    raw["tuning"]["trials"] = 2
    raw["split"].update(train_start="2018-08-15", validation_folds=1)
    raw["models"]["lightgbm"].update(learning_rate={"low": 0.05, "high": 0.15, "log": True}, max_rounds=300)
    raw["retraining"] = {"auto_promote": True, "approved_by": "model-risk-committee", "min_improvement": 0.01}
    for key, value in changes.items():
        raw[key] = {**raw.get(key, {}), **value}
    path = folder / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_retrain_promotes_a_better_challenger_and_refuses_a_degraded_one(tmp_path: Path, mlflow_template: Path) -> None:
    source = tmp_path / "fraud_q3.parquet"
    frame = pd.read_parquet(DATA)
    frame[frame["TX_DATETIME"] >= "2018-07-01"].to_parquet(source, index=False)
    project = tmp_path / ".keel"
    project.mkdir()
    shutil.copy(mlflow_template, project / "mlflow.db")
    cli = CliRunner()

    def keel(*args: str) -> str:
        result = cli.invoke(app, [*args, "--project-dir", str(project)])
        assert result.exit_code == 0, result.output + result.stderr
        return result.output

    champion = _spec(tmp_path, "champion.yaml", source, models={"families": ["logistic"]})
    keel("train", str(champion), "-q", "--author", "ana")
    keel("approve", "1", "--by", "vera", "--role", "validator", "--note", "reviewed", "--spec", str(champion))
    keel("promote", "1", "--by", "dan", "--role", "deployer", "--spec", str(champion))

    better = _spec(tmp_path, "challenger.yaml", source, models={"families": ["lightgbm"]})
    promoted = keel("retrain", str(better), "--as-of", "2018-09-30", "--no-card", "-q", "--author", "ana")
    assert "challenger card_fraud v2 against champion v1" in promoted and "promoted" in promoted

    degraded = _spec(tmp_path, "degraded.yaml", source, models={"families": ["lightgbm"]}, without_terminal=True)
    refused = keel("retrain", str(degraded), "--as-of", "2018-09-30", "--no-card", "-q", "--author", "ana")
    assert "challenger card_fraud v3 against champion v2" in refused and "refused" in refused

    governance = Governance.for_project(project)
    assert governance.champion("card_fraud").version == 2
    decisions = [row for row in governance.history("card_fraud") if row.action == "retrain"]
    assert [(row.object, json.loads(row.after)["decision"]) for row in decisions] == [
        ("card_fraud/v2", "promoted"), ("card_fraud/v3", "refused")]
    first, second = (json.loads(row.after) for row in decisions)
    assert first["window"] == second["window"]  # both judged on the same newest week
    assert first["average_precision"] > json.loads(decisions[0].before)["average_precision"] + 0.01
    assert second["average_precision"] < json.loads(decisions[1].before)["average_precision"]
    policy = [row for row in governance.history("card_fraud") if row.actor == "policy:model-risk-committee"]
    assert [row.action for row in policy] == ["approve", "promote"]
    assert governance.registry.version("card_fraud", 3).tag("retrain_decision") == "refused"
