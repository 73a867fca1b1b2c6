"""The credit example in a simulated downturn: the monitor flags the weeks it happens, no others.

Eight weeks of applications: the held-out test clients, shuffled and dealt into eight weeks
(749 different clients a week). From week 5 on, a documented shift is applied: a downturn
in which 40% of clients fall one month further behind on their two latest repayments
(PAY_0 and PAY_2 + 1, at most 9) and their latest bill grows by 25% (BILL_AMT1). Outcomes
are the clients' real ones; the shift changes only what the model sees, so scores move
while the truth does not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from keel.lifecycle.run import prepare_data
from keel.monitoring.monitor import monitor
from keel.reports.monitoring import write_monitoring_report
from keel.spec import parse_spec
from keel.training.trainer import train_model

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "credit_default"


def downturn(rows: pd.DataFrame, rng: np.random.Generator, share: float = 0.4) -> pd.DataFrame:
    """The simulated shift of ``share`` of the clients.

    They are one month further behind on their two latest repayments, their latest bill 25% higher.
    """
    hit = rng.random(len(rows)) < share
    later = {c: np.where(hit, np.minimum(rows[c] + 1, 9), rows[c]) for c in ("PAY_0", "PAY_2")}
    return rows.assign(
        **later,
        BILL_AMT1=np.where(hit, (rows["BILL_AMT1"] * 1.25).round(), rows["BILL_AMT1"]).astype(
            "int64"
        ),
    )


@pytest.mark.filterwarnings("ignore:LightGBM binary classifier:UserWarning")
def test_the_monitor_finds_a_simulated_downturn_in_the_credit_data(tmp_path: Path) -> None:
    raw = yaml.safe_load((EXAMPLE / "keel.yaml").read_text())
    raw["data"]["source"] = str(EXAMPLE / raw["data"]["source"])
    raw["tuning"]["trials"] = 2
    raw["models"]["families"] = ["lightgbm"]
    raw["monitoring"] = {"window": "week"}
    spec = parse_spec(raw)
    data = prepare_data(spec)
    outcome = train_model(data.frame, spec)
    model = outcome.model
    test = data.frame.iloc[outcome.split.test].reset_index(drop=True)

    order = np.random.default_rng(0).permutation(len(test))
    size = len(test) // 8
    weeks = []
    for week in range(8):
        rng = np.random.default_rng(week)
        rows = test.iloc[order[week * size : (week + 1) * size]].reset_index(drop=True)
        if week >= 4:
            rows = downturn(rows, rng)
        start = pd.Timestamp("2026-03-02") + pd.Timedelta(weeks=week)
        rows["time"] = start + pd.to_timedelta(np.sort(rng.integers(0, 7 * 86400, size)), unit="s")
        weeks.append(rows)
    events = pd.concat(weeks, ignore_index=True)
    events = events.assign(
        probability=model.predict_proba(events),
        version=1,
        label=(events[spec.target.column] == spec.target.positive).astype(float),
        label_time=pd.NaT,
    )

    report = monitor(
        events,
        model,
        spec.monitoring,
        name="credit_default",
        protected=spec.protected,
        as_of=pd.Timestamp("2026-03-02") + pd.Timedelta(weeks=8),
        fairness=spec.fairness,
    )

    drifted = [{f.name for f in w.drift.features if f.drifted} for w in report.windows]
    assert drifted[:4] == [set()] * 4, drifted
    assert all({"PAY_0", "PAY_2"} <= names for names in drifted[4:]), drifted
    assert sum("probability" in names for names in drifted[4:]) >= 3, drifted  # the scores move too
    assert {a.window for a in report.alerts if a.kind == "drift"} == {
        w.window for w in report.windows[4:]
    }
    # Outcomes did not move: over the weeks the realized AUC stays near the test AUC
    # (each week is noisy).
    realized = [w.realized.auc for w in report.windows]
    assert abs(np.mean(realized[4:]) - report.reference["auc"]) < 0.03, realized
    # Fairness is watched week by week on the protected attributes, with the real outcomes.
    assert all([a["attribute"] for a in w.fairness] == spec.protected for w in report.windows)
    assert all(a["adverse_impact_ratio"] is not None for w in report.windows for a in w.fairness)
    html, _ = write_monitoring_report(report.to_dict(), tmp_path / "report")
    assert "PAY_0" in html.read_text()
