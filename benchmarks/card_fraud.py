"""Card fraud: Keel's tuned model vs plain baselines, under the Fraud Detection Handbook's protocol.

    .venv/bin/python benchmarks/card_fraud.py [--trials N] [--json PATH]

Method. One script, one protocol, one feature table. The example's spec
(``examples/card_fraud/keel.yaml``) reads the handbook's 1.75 M transactions and computes
its features (Keel's window kernel). The split is the spec's ``delayed`` one: train on
2018-07-25..07-31, leave 08-01..08-07 unused while labels arrive, test on 08-08..08-14,
with the transactions of cards already known to be compromised left out of each test day.
Keel's model is what ``keel run`` trains: both families tuned on three earlier weekly folds
(average precision), the better one refit on the training week. The baselines get the very
same training rows and feature matrix, with library defaults: scikit-learn's
``LogisticRegression`` (features standardized, missing values as 0, as the handbook
does), ``RandomForestClassifier`` (missing values handled natively) and XGBoost's
``XGBClassifier``; only their seeds are fixed. Every model is scored by the same functions:
AUC ROC and average precision over all test transactions, and card precision@100 per test
day, averaged. The script exits non-zero unless Keel's model beats every baseline on all
three metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "card_fraud" / "keel.yaml"
METRICS = ("auc", "average_precision", "card_precision_at_100")


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--trials", type=int, default=None, help="tuning trials per family [default: the spec's]"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    return parser.parse_args()


def baselines(seed: int) -> dict[str, Any]:
    """The plain baselines, library defaults except the seed (and the handbook's scaling for LR)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from xgboost import XGBClassifier

    return {
        "logistic regression": make_pipeline(
            SimpleImputer(strategy="constant", fill_value=0.0),
            StandardScaler(),
            LogisticRegression(random_state=seed),
        ),
        "random forest": RandomForestClassifier(random_state=seed, n_jobs=-1),
        "XGBoost": XGBClassifier(random_state=seed, n_jobs=-1),
    }


def scores(y: np.ndarray, p: np.ndarray, days: Any, cards: Any) -> dict[str, Any]:
    """The protocol's three metrics, with card precision@100 per day."""
    from keel.evaluation.daily import daily_metrics

    daily = daily_metrics(days, y, p, entity=cards, k=100)
    return {
        "auc": float(roc_auc_score(y, p)),
        "average_precision": float(average_precision_score(y, p)),
        "card_precision_at_100": float(np.mean([d["precision_at_100"] for d in daily])),
        "daily_card_precision_at_100": [d["precision_at_100"] for d in daily],
    }


def main() -> None:
    """Train Keel's model and the baselines on the same rows, score them alike, print and check."""
    from keel.lifecycle.run import prepare_data
    from keel.spec import load_spec
    from keel.training.trainer import train_model

    args = parse_args()
    spec = load_spec(SPEC)
    if args.trials:
        spec = spec.model_copy(
            update={"tuning": spec.tuning.model_copy(update={"trials": args.trials})}
        )
    started = time.perf_counter()
    data = prepare_data(spec)
    print(
        f"features for {len(data.frame):,} transactions: {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    started = time.perf_counter()
    outcome = train_model(data.frame, spec)
    keel_seconds = time.perf_counter() - started
    split, pre = outcome.split, outcome.model.preprocessor
    test = data.frame.iloc[split.test]
    X_train, y_train = outcome.matrices.X_train, outcome.matrices.y_train
    X_test, y_test = outcome.X_test, outcome.y_test
    print(
        f"train {len(y_train):,} rows ({int(y_train.sum())} frauds), test {len(y_test):,} rows "
        f"({int(y_test.sum())} frauds), {len(pre.features)} features",
        flush=True,
    )
    days, cards = test[spec.data.time_column], test[spec.split.known_entity]
    results = {
        f"Keel ({outcome.family}, tuned)": {
            **scores(y_test, outcome.model.scorer.probability(X_test), days, cards),
            "fit_seconds": keel_seconds,
        }
    }
    for name, model in baselines(spec.seed).items():
        started = time.perf_counter()
        model.fit(X_train, y_train)
        fit_seconds = time.perf_counter() - started
        results[name] = {
            **scores(y_test, model.predict_proba(X_test)[:, 1], days, cards),
            "fit_seconds": fit_seconds,
        }
        print(f"{name}: fitted in {fit_seconds:.1f} s", flush=True)

    print("\n| model | AUC | AP | card precision@100 | fit s |\n|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['auc']:.4f} | {r['average_precision']:.4f} "
            f"| {r['card_precision_at_100']:.4f} "
            f"| {r['fit_seconds']:.1f} |"
        )
    keel_name = next(iter(results))
    keel = results[keel_name]
    beaten = {
        metric: all(keel[metric] > r[metric] for n, r in results.items() if n != keel_name)
        for metric in METRICS
    }
    for metric, ok in beaten.items():
        print(f"Keel beats every baseline on {metric}: {'yes' if ok else 'NO'}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "results": results,
                    "beaten": beaten,
                    "tuning": outcome.tuning_summary(spec.tuning.metric)["best"],
                },
                indent=2,
            )
        )
    sys.exit(0 if all(beaten.values()) else 1)


if __name__ == "__main__":
    main()
