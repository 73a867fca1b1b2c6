"""Model quality: Keel from `keel init` against LightGBM defaults, Optuna-LightGBM and FLAML.

    .venv/bin/python benchmarks/quality.py [--datasets NAME,...] [--folds 5] [--trials 40]
        [--flaml-seconds 60] [--quick] [--json FILE] [--seed 0]
    .venv/bin/python benchmarks/quality.py --setup-flaml     # FLAML's own virtualenv, once

Protocol. One outer stratified K-fold split per dataset (seeded; the same folds for every
contender). Each contender fits on K-1 folds and is scored (ROC AUC) on the held-out fold;
the table shows the mean AUC +- its standard deviation over folds and the wall time of all
folds. Contenders:

- **keel**: the pipeline a new user gets. ``profile_table`` + ``starter_spec`` (``keel init``)
  on the table, ``parse_spec``, then ``prepare_data`` (contract, recodes, missing values,
  derived features) and ``train_model`` on the outer-training rows; the held-out rows are
  scored by the returned model. Edits to the starter spec are listed in the output: the
  reviewer's (``reviewed: true``) and the protocol's: ``split.test_size`` is set to 0.05,
  because ``train_model`` keeps its own test part out of the fit and the outer fold is the
  test here (those 5% of the outer-training rows are a cost Keel pays: they are not fitted).
  The table is prepared once with ``duplicates: keep`` so that its rows match the folds; the
  training rows of a fold are then de-duplicated as the starter spec says.
- **lgbm_default**: ``lightgbm.LGBMClassifier()`` with its defaults (seeded, 2 threads).
- **optuna_lgbm**: ``--trials`` TPE trials (seeded) over the usual LightGBM space, each
  early-stopped (100 rounds) on an inner stratified 20% validation split of the
  outer-training rows; the best parameters are refit on all outer-training rows for the
  best trial's number of rounds.
- **flaml**: ``flaml.AutoML`` (metric roc_auc, ``--flaml-seconds`` per fold, seeded), run in
  its own virtualenv (FLAML is not in Keel's lock), ``benchmarks/.venv-quality``: create it
  with ``--setup-flaml`` or by hand (see ``FLAML_SETUP``). Without it the column says so.

The references see every column but the target and the columns the starter spec lists as
``protected`` (a governance rule Keel applies to itself: neither side may score on them);
text columns as pandas categories, datetimes as days since 1970. Sentinel codes and id
columns are left as they are: handling them is part of what is measured.

Datasets: ``uci_credit`` (examples/credit_default/data, 30,000 rows), ``fraud`` (the card-fraud
example's feature table, computed by its spec, on ``FRAUD_DAYS`` days of transactions after
``FRAUD_HISTORY_DAYS`` days of history: the whole file is too slow for 5 folds on 2 cores; not
in the default list), and seeded synthetic tables, each built
around one trap: ``synth_sentinels`` (96/98/999/-1 codes for "unknown"), ``synth_heavy_tails``
(log-normal and Pareto amounts), ``synth_tiny`` (1,000 rows), ``synth_high_cardinality``
(categoricals with hundreds of levels) and ``synth_ids`` (row numbers, customer and card
numbers, an application date, a date of birth and a gender column).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
FLAML_VENV = ROOT / "benchmarks" / ".venv-quality"
FLAML_PYTHON = FLAML_VENV / "bin" / "python"
FLAML_SETUP = (
    f"python3 -m venv {FLAML_VENV} && printf '*\\n' > {FLAML_VENV}/.gitignore && "
    f"{FLAML_VENV}/bin/pip install 'flaml[automl]' lightgbm pandas pyarrow scikit-learn"
)
THREADS = 2
FRAUD_HISTORY_DAYS = 45  # days of history (2018-04-01 on) behind the fraud rows kept
FRAUD_DAYS = 14  # days of transactions kept for the fraud feature table
CONTENDERS = ("keel", "lgbm_default", "optuna_lgbm", "flaml")
REFERENCES = CONTENDERS[1:]
KEEL_TEST_SIZE = 0.05
UCI_TARGET_AUC = 0.786


# --------------------------------------------------------------------------- datasets


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _label(rng: np.random.Generator, logit: np.ndarray, rate: float) -> np.ndarray:
    """0/1 labels drawn from ``sigmoid(logit + b)``, ``b`` set so the positive rate is ``rate``."""
    low, high = -30.0, 30.0
    for _ in range(60):  # bisection on the intercept: the mean probability rises with b
        b = (low + high) / 2
        low, high = (b, high) if _sigmoid(logit + b).mean() < rate else (low, b)
    return (rng.random(len(logit)) < _sigmoid(logit + (low + high) / 2)).astype(int)


def synth_sentinels(seed: int = 0, rows: int = 6000) -> pd.DataFrame:
    """Bureau-style columns whose 'unknown' is a code far from the bulk (96, 98, 999, -1)."""
    rng = np.random.default_rng(seed)
    utilization = np.clip(rng.beta(2, 3, rows) * 1.3, 0, None)
    late = rng.random(rows) < 0.6
    months_since_late = np.where(late, rng.integers(0, 84, rows), 999)
    score_known = rng.random(rows) > 0.08
    bureau_score = np.where(score_known, np.clip(rng.normal(680, 60, rows), 300, 850), -1)
    inquiries = rng.poisson(2.0, rows)
    code = rng.random(rows)
    n_inquiries = np.where(code < 0.04, 98, np.where(code < 0.07, 96, inquiries))
    tenure_months = rng.integers(1, 240, rows)
    income = rng.lognormal(10.5, 0.5, rows).round(-2)
    logit = (
        2.5 * utilization
        + np.where(late, 1.2 - 0.015 * np.where(late, months_since_late, 0), 0.0)
        + np.where(score_known, -(bureau_score - 680) / 50, 0.8)
        + 0.25 * np.minimum(inquiries, 8) * (code >= 0.07)
        + 0.9 * (code < 0.04)
        - 0.004 * tenure_months
        - 0.3 * (np.log(income) - 10.5)
    )
    return pd.DataFrame(
        {
            "utilization": utilization.round(4),
            "months_since_late": months_since_late,
            "bureau_score": bureau_score.round(),
            "n_inquiries": n_inquiries,
            "tenure_months": tenure_months,
            "income": income,
            "default": _label(rng, logit, 0.15),
        }
    )


def synth_heavy_tails(seed: int = 0, rows: int = 6000) -> pd.DataFrame:
    """Amounts spanning orders of magnitude (log-normal, Pareto) and a two-sided net flow."""
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10.8, 0.7, rows)
    balance = rng.lognormal(8.5, 1.6, rows)
    largest_purchase = (rng.pareto(1.3, rows) + 1) * 50
    net_flow = rng.standard_t(2, rows) * 2000
    cash_advances = np.where(rng.random(rows) < 0.3, rng.lognormal(6, 1.5, rows), 0.0)
    accounts = rng.integers(1, 12, rows)
    logit = (
        0.9 * (np.log1p(balance) - np.log(income))
        + 0.5 * np.log1p(largest_purchase)
        - 0.5 * np.sign(net_flow) * np.log1p(np.abs(net_flow)) / 3
        + 0.35 * np.log1p(cash_advances) / 2
        + 0.05 * accounts
    )
    return pd.DataFrame(
        {
            "income": income.round(2),
            "balance": balance.round(2),
            "largest_purchase": largest_purchase.round(2),
            "net_flow": net_flow.round(2),
            "cash_advances": cash_advances.round(2),
            "accounts": accounts,
            "bad": _label(rng, logit, 0.2),
        }
    )


def synth_tiny(seed: int = 0, rows: int = 1000) -> pd.DataFrame:
    """1,000 rows: a mostly additive signal in five columns, five columns of noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 10))
    logit = X[:, 0] - 0.8 * X[:, 1] + 0.6 * X[:, 2] + 0.4 * np.abs(X[:, 3]) - 0.5 * X[:, 4]
    frame = pd.DataFrame(X.round(4), columns=[f"x{j}" for j in range(10)])
    frame["target"] = _label(rng, logit, 0.3)
    return frame


def synth_high_cardinality(seed: int = 0, rows: int = 8000) -> pd.DataFrame:
    """A merchant with 400 levels (Zipf frequencies), a product code with 80, two numbers."""
    rng = np.random.default_rng(seed)
    merchants = 400
    weights = 1 / np.arange(1, merchants + 1) ** 1.1
    merchant = rng.choice(merchants, rows, p=weights / weights.sum())
    merchant_effect = rng.normal(0, 0.8, merchants)
    product = rng.integers(0, 80, rows)
    product_effect = rng.normal(0, 0.5, 80)
    amount = rng.lognormal(4, 1, rows)
    hour = rng.integers(0, 24, rows)
    logit = (
        merchant_effect[merchant]
        + product_effect[product]
        + 0.4 * np.log(amount)
        + 0.6 * ((hour < 6) | (hour > 22))
    )
    return pd.DataFrame(
        {
            "merchant": [f"m{m:03d}" for m in merchant],
            "product_code": [f"P{p:02d}" for p in product],
            "amount": amount.round(2),
            "hour": hour,
            "fraud": _label(rng, logit, 0.1),
        }
    )


def synth_ids(seed: int = 0, rows: int = 6000) -> pd.DataFrame:
    """Row numbers, customer and card numbers, dates and protected columns beside the signal."""
    rng = np.random.default_rng(seed)
    days = rng.integers(0, 730, rows)
    applied = pd.Timestamp("2022-01-01") + pd.to_timedelta(np.sort(days), unit="D")
    age = rng.integers(21, 75, rows)
    dob = applied - pd.to_timedelta(age * 365 + rng.integers(0, 365, rows), unit="D")
    debt_ratio = rng.gamma(2, 0.2, rows)
    delinquencies = rng.poisson(0.4, rows)
    limit = rng.lognormal(9, 0.6, rows).round(-2)
    channel = rng.choice(["branch", "online", "phone", "partner"], rows, p=[0.3, 0.5, 0.1, 0.1])
    channel_effect = {"branch": -0.2, "online": 0.0, "phone": 0.3, "partner": 0.5}
    logit = (
        2.0 * debt_ratio
        + 0.7 * delinquencies
        - 0.3 * (np.log(limit) - 9)
        + np.array([channel_effect[c] for c in channel])
        - 0.01 * (age - 45)
    )
    return pd.DataFrame(
        {
            "row_number": np.arange(1, rows + 1),
            "customer_id": rng.choice(np.arange(10_000_000, 99_999_999), rows, replace=False),
            "card_number": rng.choice(
                np.arange(4_000_000_000_000_000, 4_000_000_100_000_000), rows, replace=False
            ),
            "application_date": applied,
            "date_of_birth": dob,
            "gender": rng.choice(["F", "M"], rows),
            "debt_ratio": debt_ratio.round(4),
            "delinquencies": delinquencies,
            "credit_limit": limit,
            "channel": channel,
            "defaulted": _label(rng, logit, 0.12),
        }
    )


def uci_credit(seed: int = 0) -> pd.DataFrame:
    """The UCI credit-card default data, as the example ships it (30,000 rows, 25 columns)."""
    return pd.read_csv(ROOT / "examples" / "credit_default" / "data" / "UCI_Credit_Card.csv")


def fraud_features(seed: int = 0) -> pd.DataFrame:
    """The card-fraud example's feature table for ``FRAUD_DAYS`` days of transactions.

    Computed by the example spec (windows, calendar, derived) from the transactions up to
    the last of those days, so every kept row has ``FRAUD_HISTORY_DAYS`` of history behind
    it; the columns that are not features under that spec are dropped, except the target.
    """
    import datetime as dt

    from keel.lifecycle.run import prepare_data
    from keel.spec import load_spec

    spec = load_spec(ROOT / "examples" / "card_fraud" / "keel.yaml")
    start = dt.datetime(2018, 4, 1) + dt.timedelta(days=FRAUD_HISTORY_DAYS)
    until = start + dt.timedelta(days=FRAUD_DAYS)
    spec = spec.model_copy(update={"data": spec.data.model_copy(update={"until": until})})
    frame = prepare_data(spec).frame
    frame = frame[frame[spec.data.time_column] >= start]
    keep = [*spec.model_features(), spec.target.column]
    return frame[keep].reset_index(drop=True)


SYNTHETIC: dict[str, Callable[..., pd.DataFrame]] = {
    "synth_sentinels": synth_sentinels,
    "synth_heavy_tails": synth_heavy_tails,
    "synth_tiny": synth_tiny,
    "synth_high_cardinality": synth_high_cardinality,
    "synth_ids": synth_ids,
}
DATASETS: dict[str, Callable[..., pd.DataFrame]] = {
    "uci_credit": uci_credit,
    **SYNTHETIC,
    "fraud": fraud_features,
}
TARGETS = {
    "uci_credit": "default.payment.next.month",
    "synth_sentinels": "default",
    "synth_heavy_tails": "bad",
    "synth_tiny": "target",
    "synth_high_cardinality": "fraud",
    "synth_ids": "defaulted",
    "fraud": "TX_FRAUD",
}


# --------------------------------------------------------------------------- keel


def keel_spec(frame: pd.DataFrame, name: str, target: str, source: str) -> tuple[Any, list[str]]:
    """The starter spec ``keel init`` writes for ``frame``, with the edits listed (parsed)."""
    from keel.contracts.profile import profile_table, starter_spec
    from keel.spec import parse_spec

    raw = starter_spec(profile_table(frame), source=source, project=name, target=target)
    edits = []
    if raw.get("reviewed") is False:
        raw["reviewed"] = True
        edits.append("reviewer: reviewed: true")
    raw.setdefault("split", {})["test_size"] = KEEL_TEST_SIZE
    edits.append(f"protocol: split.test_size: {KEEL_TEST_SIZE}")
    return parse_spec(raw), edits


def run_keel(
    frame: pd.DataFrame, name: str, target: str, folds: list[tuple[np.ndarray, np.ndarray]]
) -> dict[str, Any]:
    """Keel's pipeline from ``keel init`` on each outer fold; see the module docstring."""
    from keel.lifecycle.run import prepare_data
    from keel.training.trainer import train_model

    with tempfile.TemporaryDirectory() as tmp:
        source = str(Path(tmp) / f"{name}.parquet")
        frame.to_parquet(source, index=False)
        spec, edits = keel_spec(frame, name, target, source)
        as_is = spec.model_copy(
            update={"data": spec.data.model_copy(update={"duplicates": "keep"})}
        )
        prepared = prepare_data(as_is).frame
    if len(prepared) != len(frame):
        raise RuntimeError(f"prepare_data kept {len(prepared)} of {len(frame)} rows")
    id_column = spec.data.id_column
    aucs, families = [], []
    for train, test in folds:
        rows = prepared.iloc[train]
        if spec.data.duplicates == "drop":
            rows = rows[~rows.drop(columns=[id_column] if id_column else []).duplicated()]
        outcome = train_model(rows.reset_index(drop=True), spec)
        model = outcome.model
        p = model.scorer.probability(model.preprocessor.transform(prepared.iloc[test]))
        aucs.append(_auc(frame[target].to_numpy()[test], p, spec.target.positive))
        families.append(outcome.family)
    return {
        "aucs": aucs,
        "edits": edits,
        "families": families,
        "features": spec.model_features(),
        "protected": list(spec.protected),
    }


# --------------------------------------------------------------------------- references


def reference_matrix(frame: pd.DataFrame, target: str, drop: list[str]) -> pd.DataFrame:
    """All columns but the target and ``drop``: text as categories, datetimes as days."""
    X = frame.drop(columns=[target, *drop])
    for column in X.columns:
        series = X[column]
        if pd.api.types.is_datetime64_any_dtype(series):
            X[column] = series.astype("int64") / 86_400e9
        elif pd.api.types.is_bool_dtype(series):
            X[column] = series.astype(int)
        elif not pd.api.types.is_numeric_dtype(series):
            X[column] = series.astype(str).astype("category")
    return X


def run_lgbm_default(X: pd.DataFrame, y: np.ndarray, train: np.ndarray, seed: int) -> Any:
    """LightGBM with its default parameters."""
    import lightgbm as lgb

    model = lgb.LGBMClassifier(random_state=seed, n_jobs=THREADS, verbose=-1)
    return model.fit(X.iloc[train], y[train])


def run_optuna_lgbm(
    X: pd.DataFrame, y: np.ndarray, train: np.ndarray, seed: int, trials: int
) -> Any:
    """Optuna TPE over LightGBM, early stopping on an inner 20% split, refit on all rows."""
    import lightgbm as lgb
    import optuna
    from sklearn.model_selection import train_test_split

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    inner, valid = train_test_split(train, test_size=0.2, stratify=y[train], random_state=seed)
    # feature_pre_filter off: trials change min_child_samples on the same Dataset.
    fit_set = lgb.Dataset(
        X.iloc[inner], y[inner], params={"feature_pre_filter": False}, free_raw_data=False
    )
    valid_set = lgb.Dataset(X.iloc[valid], y[valid], reference=fit_set, free_raw_data=False)
    base = {
        "objective": "binary",
        "metric": "auc",
        "verbosity": -1,
        "seed": seed,
        "num_threads": THREADS,
        "bagging_freq": 1,
    }
    rounds: dict[int, int] = {}

    def objective(trial: optuna.Trial) -> float:
        params = {
            **base,
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 8, 256, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 5, 200, log=True),
            "feature_fraction": trial.suggest_float("feature_fraction", 0.4, 1.0),
            "bagging_fraction": trial.suggest_float("bagging_fraction", 0.4, 1.0),
            "lambda_l1": trial.suggest_float("lambda_l1", 1e-8, 10.0, log=True),
            "lambda_l2": trial.suggest_float("lambda_l2", 1e-8, 10.0, log=True),
        }
        booster = lgb.train(
            params,
            fit_set,
            num_boost_round=2000,
            valid_sets=[valid_set],
            callbacks=[lgb.early_stopping(100, verbose=False)],
        )
        rounds[trial.number] = booster.best_iteration
        return float(booster.best_score["valid_0"]["auc"])

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials)
    best = study.best_trial
    params = {**base, **best.params}
    return lgb.train(
        params, lgb.Dataset(X.iloc[train], y[train]), num_boost_round=rounds[best.number]
    )


_FLAML_WORKER = r"""
import json, sys
import pandas as pd
from flaml import AutoML
train = pd.read_parquet(sys.argv[1])
test = pd.read_parquet(sys.argv[2])
y = train.pop("__y__").to_numpy()
automl = AutoML()
automl.fit(train, y, task="classification", metric="roc_auc", time_budget=float(sys.argv[4]),
           seed=int(sys.argv[5]), n_jobs=int(sys.argv[6]), verbose=0)
p = automl.predict_proba(test)[:, list(automl.classes_).index(1)]
json.dump({"p": p.tolist(), "best": automl.best_estimator}, open(sys.argv[3], "w"))
"""


def flaml_missing() -> str | None:
    """Why FLAML cannot run here (None when it can), with the command that installs it."""
    if not FLAML_PYTHON.exists():
        return f"FLAML's virtualenv {FLAML_VENV} does not exist; create it with: {FLAML_SETUP}"
    probe = subprocess.run(
        [str(FLAML_PYTHON), "-c", "import flaml.automl, lightgbm, pyarrow"],
        capture_output=True,
        text=True,
    )
    if probe.returncode:
        last = (probe.stderr.strip().splitlines() or ["unknown error"])[-1]
        return f"FLAML's virtualenv {FLAML_VENV} cannot import flaml: {last}; run: {FLAML_SETUP}"
    return None


def run_flaml(
    X: pd.DataFrame, y: np.ndarray, train: np.ndarray, test: np.ndarray, seed: int, seconds: float
) -> tuple[np.ndarray, str]:
    """FLAML AutoML in its own virtualenv: fit on ``train``, probabilities for ``test``."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = [str(Path(tmp) / n) for n in ("train.parquet", "test.parquet", "out.json")]
        X.iloc[train].assign(__y__=y[train]).to_parquet(paths[0], index=False)
        X.iloc[test].to_parquet(paths[1], index=False)
        done = subprocess.run(
            [str(FLAML_PYTHON), "-c", _FLAML_WORKER, *paths, str(seconds), str(seed), str(THREADS)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        if done.returncode:
            raise RuntimeError(f"FLAML failed: {done.stderr.strip()[-2000:]}")
        out = json.loads(Path(paths[2]).read_text())
    return np.asarray(out["p"]), str(out["best"])


# --------------------------------------------------------------------------- protocol


def _auc(y: np.ndarray, p: np.ndarray, positive: Any = 1) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score((y == positive).astype(int), p))


def outer_folds(y: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The seeded stratified K-fold split every contender uses."""
    from sklearn.model_selection import StratifiedKFold

    return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def positive_label(frame: pd.DataFrame, target: str) -> np.ndarray:
    """The target as 0/1 (the larger value of a numeric target is positive)."""
    column = frame[target]
    return (column == max(column.dropna().unique())).to_numpy().astype(int)


def benchmark_dataset(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every contender on one dataset, under one fold split."""
    started = time.perf_counter()
    frame = DATASETS[name](seed=args.seed)
    target = TARGETS[name]
    y = positive_label(frame, target)
    folds = outer_folds(y, args.folds, args.seed)
    print(
        f"\n## {name}: {len(frame)} rows, {frame.shape[1] - 1} columns, "
        f"{y.mean():.1%} positive (loaded in {time.perf_counter() - started:.1f}s)",
        flush=True,
    )
    result: dict[str, Any] = {"rows": len(frame), "positive_rate": float(y.mean()), "scores": {}}
    protected: list[str] = []
    for contender in args.contenders:
        t0 = time.perf_counter()
        entry: dict[str, Any] = {}
        try:
            if contender == "keel":
                keel = run_keel(frame, name, target, folds)
                protected = keel.pop("protected")
                entry.update(keel)
            else:
                if contender == "flaml" and (why := flaml_missing()):
                    raise RuntimeError(why)
                X = reference_matrix(frame, target, [c for c in protected if c in frame])
                entry["aucs"], extra = [], []
                for train, test in folds:
                    if contender == "flaml":
                        p, best = run_flaml(X, y, train, test, args.seed, args.flaml_seconds)
                        extra.append(best)
                    elif contender == "optuna_lgbm":
                        booster = run_optuna_lgbm(X, y, train, args.seed, args.trials)
                        p = booster.predict(X.iloc[test])
                    else:
                        p = run_lgbm_default(X, y, train, args.seed).predict_proba(X.iloc[test])[
                            :, 1
                        ]
                    entry["aucs"].append(_auc(y[test], p))
                if extra:
                    entry["best_estimators"] = extra
                entry["dropped"] = [c for c in protected if c in frame]
        except Exception as err:  # noqa: BLE001 (a contender failing is a result, not a crash)
            entry = {"error": f"{type(err).__name__}: {err}"}
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        if "aucs" in entry:
            entry["mean"] = float(np.mean(entry["aucs"]))
            entry["sd"] = float(np.std(entry["aucs"], ddof=1)) if len(entry["aucs"]) > 1 else 0.0
        result["scores"][contender] = entry
        shown = (
            f"{entry['mean']:.4f} +- {entry['sd']:.4f}" if "mean" in entry else entry["error"][:300]
        )
        print(f"  {contender:<13} {shown}  ({entry['seconds']}s)", flush=True)
    result["verdict"] = verdict(name, result["scores"])
    return result


def verdict(name: str, scores: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Whether Keel's mean AUC is at least the best reference's (and the UCI target)."""
    keel = scores.get("keel", {}).get("mean")
    refs = {c: s["mean"] for c, s in scores.items() if c in REFERENCES and "mean" in s}
    best = max(refs, key=lambda c: refs[c]) if refs else None
    out: dict[str, Any] = {"keel": keel, "best_reference": best}
    if keel is not None and best is not None:
        out["margin"] = keel - refs[best]
        out["keel_wins"] = keel >= refs[best]
    if name == "uci_credit" and keel is not None:
        out["uci_target"] = UCI_TARGET_AUC
        out["meets_uci_target"] = keel >= UCI_TARGET_AUC
    return out


def verdict_line(name: str, v: dict[str, Any]) -> str:
    """One sentence on whether Keel beat the best reference on ``name``."""
    if v.get("keel") is None or v.get("best_reference") is None:
        return f"- {name}: no comparison (a contender failed or did not run)"
    word = "yes" if v["keel_wins"] else "NO"
    line = (
        f"- {name}: Keel >= best reference ({v['best_reference']})? {word} "
        f"(margin {v['margin']:+.4f})"
    )
    if "uci_target" in v:
        line += f"; >= {v['uci_target']}? {'yes' if v['meets_uci_target'] else 'NO'}"
    return line


def markdown(results: dict[str, dict[str, Any]], contenders: list[str]) -> str:
    """The results as a Markdown table (mean AUC +- sd, wall seconds) and a verdict per row."""
    head = "| dataset | rows | " + " | ".join(contenders) + " |"
    lines = [head, "|" + " --- |" * (len(contenders) + 2)]
    for name, result in results.items():
        cells = []
        for contender in contenders:
            s = result["scores"].get(contender, {})
            cells.append(
                f"{s['mean']:.4f} ± {s['sd']:.4f} ({s['seconds']:.0f} s)"
                if "mean" in s
                else "failed"
                if "error" in s
                else "-"
            )
        lines.append(f"| {name} | {result['rows']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [verdict_line(name, r["verdict"]) for name, r in results.items()]
    return "\n".join(lines)


def setup_flaml() -> int:
    """Create FLAML's virtualenv (network to PyPI needed once)."""
    print(f"$ {FLAML_SETUP}", flush=True)
    return subprocess.run(FLAML_SETUP, shell=True).returncode


def main(argv: list[str] | None = None) -> int:
    """Parse options, run every dataset and print (and optionally write) the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = ",".join(name for name in DATASETS if name != "fraud")
    parser.add_argument("--datasets", default=default, help=f"comma list of {', '.join(DATASETS)}")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=40, help="Optuna-LightGBM trials per fold")
    parser.add_argument("--flaml-seconds", type=float, default=60.0, help="FLAML budget per fold")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="3 folds, 5 trials, 10 s FLAML")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument("--setup-flaml", action="store_true", help="create FLAML's virtualenv")
    args = parser.parse_args(argv)
    if args.setup_flaml:
        return setup_flaml()
    if args.quick:
        args.folds, args.trials, args.flaml_seconds = 3, 5, 10.0
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = [n for n in names if n not in DATASETS]
    args.contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    bad = [c for c in args.contenders if c not in CONTENDERS]
    if unknown or bad:
        parser.error(
            f"unknown dataset(s) {unknown} / contender(s) {bad}; "
            f"datasets: {', '.join(DATASETS)}; contenders: {', '.join(CONTENDERS)}"
        )
    if "flaml" in args.contenders and (why := flaml_missing()):
        print(f"note: {why}", flush=True)
    print(
        f"# quality: {args.folds}-fold stratified CV (seed {args.seed}), Optuna {args.trials} "
        f"trials, FLAML {args.flaml_seconds:g} s per fold, {THREADS} threads",
        flush=True,
    )
    warnings.filterwarnings("ignore", message=".*Reference Dataset.*")
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        results[name] = benchmark_dataset(name, args)
        if args.json:  # after each dataset, so a long run that is stopped keeps what it did
            settings = {k: str(v) for k, v in vars(args).items()}
            args.json.write_text(json.dumps({"settings": settings, "results": results}, indent=1))
    edits = sorted(
        {e for r in results.values() for e in r["scores"].get("keel", {}).get("edits", [])}
    )
    print("\n" + markdown(results, args.contenders))
    print(f"\nKeel's edits to the starter spec: {'; '.join(edits) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
