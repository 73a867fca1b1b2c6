"""The fraud example by month: monitor, compare the label-free estimate with the truth, retrain.

    .venv/bin/python benchmarks/monitoring_fraud.py [--trials N] [--out DIR]

Method. The champion is trained with the example's spec (``examples/card_fraud/keel.yaml``)
on April and May 2018: the handbook's delayed protocol with a 47-day training window from
April 1, the 7-day delay, and the test week May 25-31. Then, month by month from June to
September, the month's transactions are scored by the champion of the day (window features
from the whole history, point in time) and monitored against that champion's baseline:
drift of every input and of the score, the label-free AUC estimate (CBPE) from the
probabilities alone, and, a week after the month (the labels' delay), the realized AUC. At
each month's end ``keel retrain`` trains a challenger on the newest window and the policy
(auto-promotion, margin 0.005 average precision) decides. For speed, LightGBM runs with 255
bins and ``--trials`` trials (default 3) with one validation fold, instead of the example's
4095 bins, 25 trials and 3 folds.

Printed per month: the version that scored it, rows, fraud rate, estimated and realized AUC
and their difference, estimated and realized average precision, the drifted inputs, and the
retraining decision at the month's end; then the mean absolute error of the AUC estimate.
The HTML report of all months is written to ``--out`` (default: a temporary folder, kept).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "card_fraud"
DATA = EXAMPLE / "data" / "fraud_handbook_simulated_raw.parquet"
MONTHS = ["2018-06", "2018-07", "2018-08", "2018-09"]


def _spec(folder: Path, trials: int) -> Path:
    raw = yaml.safe_load((EXAMPLE / "keel.yaml").read_text())
    raw["data"]["source"] = str(DATA)
    raw["split"].update(train_start="2018-04-01", train_days=47, validation_folds=1)
    raw["models"]["families"] = ["lightgbm"]
    raw["models"]["lightgbm"].update(
        max_bin=255, max_rounds=500, learning_rate={"low": 0.05, "high": 0.2, "log": True}
    )
    raw["tuning"]["trials"] = trials
    raw["monitoring"] = {"window": "month", "label_delay": "7d", "min_rows": 1000}
    raw["retraining"] = {
        "auto_promote": True,
        "approved_by": "benchmark policy",
        "min_improvement": 0.005,
    }
    path = folder / "keel.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logging.getLogger("mlflow").setLevel(logging.WARNING)

    from keel.features.offline import add_features
    from keel.lifecycle.retrain import retrain
    from keel.lifecycle.run import run_project
    from keel.monitoring.monitor import MonitorReport, monitor
    from keel.registry.governance import Governance
    from keel.reports.monitoring import write_monitoring_report
    from keel.spec import load_spec

    work = Path(tempfile.mkdtemp(prefix="keel-fraud-months-"))
    spec_path = _spec(work, args.trials)
    spec = load_spec(spec_path)
    project = work / ".keel"
    started = time.perf_counter()
    first = run_project(spec, project_dir=project, author="ana", with_card=False)
    governance = Governance.for_project(project)
    governance.approve(
        first.model_name, first.version, by="vera", role="validator", note="benchmark"
    )
    governance.promote(first.model_name, first.version, by="dan", role="deployer")
    print(
        f"champion v{first.version} trained on April-May in {time.perf_counter() - started:.0f} s "
        f"(test AUC {first.metrics['test']['auc']:.4f})"
    )

    featured = add_features(pd.read_parquet(DATA), spec)
    month = featured["TX_DATETIME"].dt.strftime("%Y-%m")
    rows, windows = [], []
    for name in MONTHS:
        champion = governance.champion(spec.model_name())
        model, _ = governance.registry.load_model(spec.model_name(), champion.version)
        part = featured[month == name]
        events = part.assign(
            time=part["TX_DATETIME"],
            probability=model.predict_proba(part),
            version=champion.version,
            label=part["TX_FRAUD"].astype(float),
            label_time=pd.NaT,
        )
        end = pd.Period(name).end_time.normalize() + pd.Timedelta(days=1)
        report = monitor(
            events, model, spec.monitoring, name=spec.model_name(), as_of=end + pd.Timedelta(days=8)
        )
        window = report.windows[-1]
        windows.append(window)
        t0 = time.perf_counter()
        decision = retrain(spec, project_dir=project, author="ana", as_of=end, with_card=False)
        drifted = [f.name for f in window.drift.features if f.drifted] if window.drift else []
        rows.append(
            {
                "month": name,
                "version": champion.version,
                "rows": window.rows,
                "fraud_rate": window.realized.positive_rate,
                "auc_estimated": window.estimated.auc,
                "auc_realized": window.realized.auc,
                "ap_estimated": window.estimated.average_precision,
                "ap_realized": window.realized.average_precision,
                "drifted": len(drifted),
                "drifted_names": ", ".join(drifted[:4]) + (" ..." if len(drifted) > 4 else ""),
                "retrain": f"v{decision.challenger_version} {decision.decision} ({decision.metric} "
                f"{decision.challenger_score:.4f} vs {decision.champion_score:.4f}, "
                f"{time.perf_counter() - t0:.0f} s)",
            }
        )
    table = pd.DataFrame(rows)
    table["auc_error"] = table["auc_estimated"] - table["auc_realized"]
    with pd.option_context(
        "display.width", 250, "display.max_columns", 20, "display.float_format", "{:.4f}".format
    ):
        print(
            table[
                [
                    "month",
                    "version",
                    "rows",
                    "fraud_rate",
                    "auc_estimated",
                    "auc_realized",
                    "auc_error",
                    "ap_estimated",
                    "ap_realized",
                    "drifted",
                ]
            ].to_string(index=False)
        )
    for row in rows:
        print(
            f"{row['month']}: drifted {row['drifted_names'] or 'none'}; "
            f"at the month's end: {row['retrain']}"
        )
    print(
        f"mean |estimated - realized| AUC: {np.mean(np.abs(table['auc_error'])):.4f}; "
        f"largest: {np.max(np.abs(table['auc_error'])):.4f}"
    )
    out = args.out or work / "report"
    combined = MonitorReport(
        spec.model_name(), str(windows[-1].end), "month", report.reference, windows
    )
    html, _ = write_monitoring_report(combined.to_dict(), out)
    print(f"report: {html}; total {time.perf_counter() - started:.0f} s")
    shutil.rmtree(project, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
