"""The card-fraud example on the handbook's real transactions: protocol, card, online = offline."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from keel.cli.main import app
from keel.features.offline import compute_features
from keel.features.online import OnlineFeatures
from keel.features.windows import FeaturePlan
from keel.registry.store import Registry
from keel.spec import load_spec

from feature_checks import assert_same_features, replay

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "card_fraud"
DATA = EXAMPLE / "data" / "fraud_handbook_simulated_raw.parquet"


def test_fraud_example_follows_the_handbook_protocol(tmp_path: Path, mlflow_template: Path) -> None:
    """`keel run` with a smaller tuning budget: the handbook's train and test sets.

    The metrics come per test day.
    """
    raw = yaml.safe_load((EXAMPLE / "keel.yaml").read_text())
    raw["data"]["source"] = str(DATA)
    raw["tuning"]["trials"] = 2  # the example's 25 trials take 5 minutes; the protocol is the same
    raw["models"]["lightgbm"].update(
        learning_rate={"low": 0.05, "high": 0.15, "log": True}, max_rounds=300
    )
    spec_path = tmp_path / "keel.yaml"
    spec_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    project_dir = tmp_path / ".keel"
    project_dir.mkdir()
    shutil.copy(mlflow_template, project_dir / "mlflow.db")

    result = CliRunner().invoke(
        app, ["run", str(spec_path), "--project-dir", str(project_dir), "-q"]
    )

    assert result.exit_code == 0, result.output + result.stderr
    assert float(re.search(r"Test AUC: (\d\.\d{4})", result.output).group(1)) >= 0.85
    assert Registry.for_project(project_dir).version("card_fraud", 1).tag("family") in (
        "lightgbm",
        "logistic",
    )
    card_path = project_dir / "cards" / "card_fraud" / "v1"
    card = json.loads((card_path / "model_card.json").read_text())
    # The handbook's BaselineModeling notebook prints the same sizes: (67240, 9) and (58264, 9).
    assert (card["data"]["split"]["train"], card["data"]["split"]["test"]) == (67240, 58264)
    assert card["data"]["split"]["folds"] == 3
    days = card["daily"]["rows"]
    assert [d["day"] for d in days] == [f"2018-08-{d:02d}" for d in range(8, 15)]
    assert sum(d["rows"] for d in days) == 58264
    assert all(
        0.7 < d["auc"] < 1
        and 0.3 < d["average_precision"] < 1
        and 0.05 < d["precision_at_100"] <= 1
        and 0.1 < d["precision_at_100_days_alone"] <= 1
        for d in days
    )
    # The handbook's rule: cards caught in an earlier day's top 100 leave the later days.
    assert days[0]["entities_blocked"] == 0 < days[-1]["entities_blocked"]
    overall = card["metrics"]["test"]["card_precision_at_100"]
    assert overall == pytest.approx(np.mean([d["precision_at_100"] for d in days]))
    assert "TX_FRAUD_SCENARIO" not in card["method"]["features"]
    html = (card_path / "model_card.html").read_text()
    assert "card precision@100" in html and "2018-08-14" in html


def test_online_features_equal_offline_on_ten_days_of_real_transactions() -> None:
    """Every transaction of 2018-04-01..04-10, one by one, with each label arriving 7 days later."""
    spec = load_spec(EXAMPLE / "keel.yaml")
    frame = pd.read_parquet(DATA)
    frame = frame[frame["TX_DATETIME"] < "2018-04-11"].reset_index(drop=True)
    plan = FeaturePlan.of(spec)
    online = replay(
        frame,
        OnlineFeatures.of(spec),
        label_delay=pd.Timedelta("7d"),
        time_column="TX_DATETIME",
        label_column="TX_FRAUD",
    )
    offline = compute_features(frame, plan)
    assert_same_features(offline, online, plan, {"TX_AMOUNT"})
    assert (
        np.nanmax(offline["terminal_risk_1d"]) == 1.0
        and np.nanmax(offline["customer_nb_tx_30d"]) > 20
    )
