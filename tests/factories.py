"""Small synthetic data, specs and registered versions that tests build on."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml

if TYPE_CHECKING:
    from keel.registry.governance import Governance
    from keel.registry.principal import Principal
    from keel.registry.store import VersionInfo
    from keel.serving.served import ServedModel


def make_loans(rows: int = 2000, seed: int = 0) -> pd.DataFrame:
    """A small lending table whose default risk depends on a few columns, with a protected one."""
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10, 0.5, rows).round(0)
    debt = (income * rng.uniform(0, 1.5, rows)).round(0)
    late = rng.poisson(0.6, rows)
    region = rng.choice(["north", "south", "east", "west"], rows)
    gender = rng.choice(["f", "m"], rows)
    margin = (
        -1.6
        + 1.2 * (debt / income)
        + 0.7 * late
        - 0.4 * (region == "east")
        + rng.normal(0, 0.8, rows)
    )
    return pd.DataFrame(
        {
            "loan_id": np.arange(1, rows + 1),
            "income": income,
            "debt": debt,
            "late_payments": late,
            "region": region,
            "gender": gender,
            "defaulted": (margin > 0).astype(int),
        }
    )


def applied_over_time(
    spec: dict[str, Any], frame: pd.DataFrame, start: str, every: str
) -> tuple[dict[str, Any], pd.DataFrame]:
    """A loans spec and table with an application time and a time split, as ``keel retrain`` needs.

    The application time ``applied`` is one every ``every`` from ``start``.
    """
    spec = {**spec, "split": {"method": "time", "test_size": 0.2, "validation_size": 0.2}}
    spec["data"] = {**spec["data"], "time_column": "applied"}
    spec["contract"] = {
        "columns": {**spec["contract"]["columns"], "applied": {"dtype": "datetime"}}
    }
    return spec, frame.assign(
        applied=pd.date_range(start, periods=len(frame), freq=every).astype(str)
    )


def loans_spec(source: str, **overrides: Any) -> dict[str, Any]:
    """A spec for :func:`make_loans` data, small enough to train in seconds."""
    spec: dict[str, Any] = {
        "project": "loans",
        "seed": 7,
        "data": {"source": source, "id_column": "loan_id", "duplicates": "keep"},
        "contract": {
            "columns": {
                "loan_id": {"dtype": "int", "unique": True},
                "income": {"dtype": "int", "min": 0},
                "debt": {"dtype": "int", "min": 0},
                "late_payments": {"dtype": "int", "min": 0, "max": 30},
                "region": {"dtype": "str", "allowed": ["north", "south", "east", "west"]},
                "gender": {"dtype": "str", "allowed": ["f", "m"]},
                "defaulted": {"dtype": "int", "allowed": [0, 1]},
            }
        },
        "target": {"column": "defaulted", "positive": 1},
        "protected": ["gender"],
        "features": {"categorical": ["region"], "derived": {"debt_to_income": "debt / income"}},
        "tuning": {"trials": 3, "folds": 1},  # one split: these tests are not about folds
        "gates": {"min_auc": 0.6},
    }
    for key, value in overrides.items():
        spec[key] = value
    return spec


def write_project(folder: Path, frame: pd.DataFrame, spec: dict[str, Any]) -> Path:
    """Write data.csv and keel.yaml into ``folder``; returns the spec path."""
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "data.csv", index=False)
    path = folder / "keel.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


PASSING = {
    "min_auc": 0.7,
    "min_ks": 0.3,
    "max_ece": 0.02,
    "max_train_test_gap": 0.01,
    "max_psi": None,
    "fairness": [],
}


def register_version(
    governance: Governance,
    model_dir: Path,
    *,
    author: Principal | None = None,
    thresholds: dict[str, float] | None = None,
    measures: dict[str, Any] | None = None,
) -> VersionInfo:
    """Register a saved model as the next 'loans' version and audit it.

    As `keel run` does after training. By default its one gate (min_auc 0.6) passes on the
    recorded measures (AUC 0.7).
    """
    registry = governance.registry
    name = author.name if author else "ana"
    run_id = registry.start_run("loans", "loans-logistic", {"keel.author": name})
    registry.log_dir(run_id, model_dir, "model")
    sha = hashlib.sha256((model_dir / "model.json").read_bytes()).hexdigest()
    info = registry.register("loans", run_id, tags={"model_sha256": sha, "author": name})
    registry.finish_run(run_id)
    governance.record_registration(
        info,
        author=author,
        claimed=name,
        thresholds={"min_auc": 0.6} if thresholds is None else thresholds,
        measures=PASSING if measures is None else measures,
        model_sha256=sha,
    )
    return registry.version("loans", info.version)


def make_transactions(
    rows: int = 5000, seed: int = 0, *, cards: int = 200, terminals: int = 60, days: int = 20
) -> pd.DataFrame:
    """Card transactions in time order, with same-second ties, missing amounts and a fraud label."""
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.integers(0, days * 86400, rows))
    seconds[1::7] = seconds[::7][
        : len(seconds[1::7])
    ]  # ties: every 7th row shares its time with the next
    seconds.sort()
    amount = rng.gamma(2.0, 30.0, rows).round(2)
    amount[rng.random(rows) < 0.02] = np.nan
    return pd.DataFrame(
        {
            "tx_id": np.arange(rows, dtype=np.int64),
            "tx_time": pd.Timestamp("2024-03-01") + pd.to_timedelta(seconds, unit="s"),
            "card": rng.integers(0, cards, rows),
            "terminal": rng.integers(0, terminals, rows),
            "amount": amount,
            "channel": rng.choice(["pos", "web", "atm"], rows),
            "fraud": (rng.random(rows) < 0.05).astype(np.int64),
        }
    )


def transactions_spec(
    source: str = "tx.parquet", *, windows: dict | None = None, calendar: dict | None = None
) -> dict:
    """A spec for :func:`make_transactions`; by default every aggregate, with and without delay."""
    every = {
        "nb": {"function": "count"},
        "amount_n": {"function": "count", "column": "amount"},
        "amount_sum": {"function": "sum", "column": "amount"},
        "amount_avg": {"function": "mean", "column": "amount"},
        "amount_sd": {"function": "std", "column": "amount"},
        "amount_min": {"function": "min", "column": "amount"},
        "amount_max": {"function": "max", "column": "amount"},
        "terminals": {"function": "distinct_count", "column": "terminal"},
        "channels": {"function": "distinct_count", "column": "channel"},
        "cards": {"function": "distinct_count", "column": "card"},  # the entity itself: always 1
    }
    default = {
        "card": {"entity": "card", "windows": ["1h", "1d", "7d"], "aggregations": every},
        "card_before": {
            "entity": "card",
            "windows": ["1d"],
            "boundary": "before",
            "aggregations": every,
        },
        "terminal": {
            "entity": "terminal",
            "windows": ["1d", "7d"],
            "delay": "2d",
            "aggregations": {
                "nb": {"function": "count"},
                "risk": {"function": "mean", "column": "fraud"},
                "frauds": {"function": "sum", "column": "fraud"},
            },
        },
        "terminal_before": {
            "entity": "terminal",
            "windows": ["3d"],
            "delay": "1d",
            "boundary": "before",
            "aggregations": {"risk": {"function": "mean", "column": "fraud"}},
        },
    }
    return {
        "project": "transactions",
        "data": {"source": source, "id_column": "tx_id", "time_column": "tx_time"},
        "contract": {
            "columns": {
                "tx_id": {"dtype": "int", "unique": True},
                "tx_time": {"dtype": "datetime"},
                "card": {"dtype": "int"},
                "terminal": {"dtype": "int"},
                "amount": {"dtype": "float", "nullable": True},
                "channel": {"dtype": "str", "allowed": ["pos", "web", "atm"]},
                "fraud": {"dtype": "int", "allowed": [0, 1]},
            }
        },
        "target": {"column": "fraud"},
        "features": {
            "include": ["amount"],
            "windows": default if windows is None else windows,
            "calendar": {"is_weekend": "weekend", "is_night": "night"}
            if calendar is None
            else calendar,
        },
        "split": {"method": "time"},
    }


def small_engine(version: int = 1) -> ServedModel:
    """A logistic loans model trained on 600 rows in a second, as a ServedModel for API tests."""
    from keel.serving.served import ServedModel
    from keel.spec import parse_spec
    from keel.training.trainer import train_model

    raw = loans_spec("unused.csv", tuning={"trials": 1}, models={"families": ["logistic"]})
    return ServedModel(
        train_model(make_loans(rows=600, seed=2), parse_spec(raw)).model, "loans", version
    )


def post_loans(project_dir: Path, *, income_factor: float, rows: int = 400, seed: int = 17) -> None:
    """Score ``rows`` new loan applications through the champion's API, which logs them in
    predictions.db; ``income_factor`` scales every income (0.5 is a drift monitoring must see)."""
    from fastapi.testclient import TestClient

    from keel.registry.governance import Governance
    from keel.serving.app import create_app
    from keel.serving.loader import load_alias
    from keel.serving.predictions import PredictionLog

    log = PredictionLog(project_dir / "predictions.db")
    governance = Governance.for_project(project_dir, writer=False)
    client = TestClient(create_app(load_alias(governance, "loans"), prediction_log=log))
    for row in make_loans(rows, seed=seed).to_dict("records"):
        record = {
            "income": int(row["income"] * income_factor),
            "debt": int(row["debt"]),
            "late_payments": int(row["late_payments"]),
            "region": row["region"],
        }
        assert client.post("/v1/score", json=record).status_code == 200
    log.close()
