"""`keel init` then `keel run`, unedited, on five tables built to carry a new user's traps.

Each table is seeded and small. The traps: a row number and a shuffled customer number, card
numbers repeated per card, keyed account codes, the unnamed pandas index, transaction times and
dates of birth, sentinel codes (96/98, -1, 999) for "unknown", heavy-tailed amounts, a tiny
sample, and protected attributes (age, sex, gender, race, nationality, marital status, zip).
A starter spec must train on each, never feed an id, a card number, a date or a protected
column to the model, list the protected ones for review, write gates, invent no reason text,
read the sentinels as missing, and leave the version unapprovable until a person reviews it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from keel.cli.main import app
from keel.registry.store import Registry
from keel.spec import load_spec

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Trap:
    """A table, what must never become a feature, and what `keel init` must propose."""

    frame: pd.DataFrame
    target: str
    never_features: frozenset[str]
    protected: frozenset[str]
    sentinels: dict[str, list[int]]
    write_index: bool = False


def _logit(margin: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (rng.random(len(margin)) < 1 / (1 + np.exp(-margin))).astype(int)


def _credit(rows: int = 1500, seed: int = 11) -> Trap:
    """Credit-like: row number, shuffled customer number, age, sex, 96/98 codes, heavy income."""
    rng = np.random.default_rng(seed)
    age = rng.integers(21, 76, rows)
    income = np.round(rng.lognormal(10.5, 0.9, rows), 2)
    dependents = rng.integers(0, 6, rows)
    unknown = rng.random(rows)
    dependents = np.where(unknown < 0.04, 96, np.where(unknown < 0.07, 98, dependents))
    utilization = rng.beta(2, 3, rows).round(4)
    late = rng.poisson(0.6, rows)
    margin = -1.5 + 2.5 * utilization + 0.8 * late - 0.3 * np.log(income / 30000)
    frame = pd.DataFrame(
        {
            "id": np.arange(1, rows + 1),
            "customer_number": rng.permutation(np.arange(500_000, 500_000 + rows)),
            "age": age,
            "sex": rng.choice([1, 2], rows),
            "num_dependents": dependents,
            "income": income,
            "utilization": utilization,
            "late_payments": late,
            "default": _logit(margin, rng),
        }
    )
    return Trap(
        frame,
        "default",
        frozenset({"id", "customer_number", "age", "sex"}),
        frozenset({"age", "sex"}),
        {"num_dependents": [96, 98]},
    )


def _transactions(rows: int = 2000, seed: int = 12) -> Trap:
    """Card transactions: times, 16-digit card numbers repeated, dob, gender, zip, merchants."""
    rng = np.random.default_rng(seed)
    cards = rng.integers(4_000_000_000_000_000, 4_999_999_999_999_999, 250, dtype=np.int64)
    card = rng.integers(0, len(cards), rows)
    dob = pd.Timestamp("1950-01-01") + pd.to_timedelta(rng.integers(0, 18000, 250), unit="D")
    zips = rng.integers(10_000, 99_999, 250)
    when = pd.Timestamp("2020-01-01") + pd.to_timedelta(
        np.sort(rng.integers(0, 180 * 86400, rows)), unit="s"
    )
    amt = np.round(rng.lognormal(3.5, 1.3, rows), 2)
    category = rng.choice(["grocery", "travel", "shopping", "gas", "misc"], rows)
    night = when.hour < 5
    margin = -4.0 + 0.9 * np.log1p(amt) / 2 + 1.5 * night + 1.0 * (category == "travel")
    frame = pd.DataFrame(
        {
            "trans_date_trans_time": when.strftime("%Y-%m-%d %H:%M:%S"),
            "cc_num": cards[card],
            "merchant": [f"fraud_Merchant {i}" for i in rng.integers(0, 700, rows)],
            "category": category,
            "amt": amt,
            "gender": rng.choice(["M", "F"], 250)[card],
            "zip": zips[card],
            "city_pop": rng.integers(100, 2_000_000, 250)[card],
            "dob": dob.strftime("%Y-%m-%d")[card],
            "is_fraud": _logit(margin, rng),
        }
    )
    return Trap(
        frame,
        "is_fraud",
        frozenset({"trans_date_trans_time", "cc_num", "merchant", "gender", "zip", "dob"}),
        frozenset({"gender", "zip", "dob"}),
        {},
    )


def _tiny(rows: int = 300, seed: int = 13) -> Trap:
    """Three hundred applicants with keyed ids: small enough that any leak would show."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (rows, 3))
    region = rng.choice(["north", "south", "east"], rows)
    margin = 1.2 * x[:, 0] - 0.8 * x[:, 1] + 0.5 * (region == "east")
    frame = pd.DataFrame(
        {
            "applicant_id": [f"AP{i:04d}" for i in rng.permutation(rows)],
            "score_a": x[:, 0].round(3),
            "score_b": x[:, 1].round(3),
            "score_c": x[:, 2].round(3),
            "region": region,
            "bad": _logit(margin, rng),
        }
    )
    return Trap(frame, "bad", frozenset({"applicant_id"}), frozenset(), {})


def _sentinels(rows: int = 1500, seed: int = 14) -> Trap:
    """Numeric columns with -1 and 999 for unknown, race and nationality."""
    rng = np.random.default_rng(seed)
    months = rng.integers(0, 60, rows)
    months = np.where(rng.random(rows) < 0.1, 999, months)
    bureau = rng.normal(650, 60, rows).round().astype(int)
    bureau = np.where(rng.random(rows) < 0.06, -1, bureau)
    debt_ratio = rng.gamma(2.0, 0.2, rows).round(3)
    known = np.where(months == 999, 60, months)
    score = np.where(bureau == -1, 650, bureau)
    margin = -1.0 - 0.03 * known - 0.01 * (score - 650) + 1.5 * debt_ratio
    frame = pd.DataFrame(
        {
            "months_since_delinquency": months,
            "bureau_score": bureau,
            "debt_ratio": debt_ratio,
            "race": rng.choice(["a", "b", "c", "d"], rows),
            "nationality": rng.choice(["x", "y", "z"], rows),
            "bad_loan": _logit(margin, rng),
        }
    )
    return Trap(
        frame,
        "bad_loan",
        frozenset({"race", "nationality"}),
        frozenset({"race", "nationality"}),
        {"months_since_delinquency": [999], "bureau_score": [-1]},
    )


def _mixed(rows: int = 1500, seed: int = 15) -> Trap:
    """A CSV written with its pandas index, dates, marital status and ACC000123 account codes."""
    rng = np.random.default_rng(seed)
    applied = pd.Timestamp("2021-01-01") + pd.to_timedelta(
        np.sort(rng.integers(0, 700, rows)), unit="D"
    )
    born = pd.Timestamp("1950-01-01") + pd.to_timedelta(rng.integers(0, 17000, rows), unit="D")
    amount = np.round(rng.lognormal(9, 1.0, rows), 0)
    term = rng.choice([12, 24, 36, 60], rows)
    purpose = rng.choice(["car", "home", "education", "other"], rows)
    margin = -2.0 + 0.4 * np.log(amount / 8000) + 0.02 * (term - 24) + 0.8 * (purpose == "other")
    frame = pd.DataFrame(
        {
            "application_date": applied.strftime("%Y-%m-%d"),
            "date_of_birth": born.strftime("%Y-%m-%d"),
            "marital_status": rng.choice(["single", "married", "divorced"], rows),
            "account_ref": [f"ACC{i:06d}" for i in rng.permutation(rows) + 100],
            "loan_amount": amount,
            "term": term,
            "purpose": purpose,
            "defaulted": _logit(margin, rng),
        }
    )
    return Trap(
        frame,
        "defaulted",
        frozenset(
            {"Unnamed: 0", "application_date", "date_of_birth", "account_ref", "marital_status"}
        ),
        frozenset({"date_of_birth", "marital_status"}),
        {},
        write_index=True,
    )


TRAPS = {
    "credit": _credit,
    "transactions": _transactions,
    "tiny": _tiny,
    "sentinels": _sentinels,
    "mixed": _mixed,
}


def _init_and_run(tmp_path: Path, mlflow_template: Path, trap: Trap) -> Path:
    data = tmp_path / "table.csv"
    trap.frame.to_csv(data, index=trap.write_index)
    (tmp_path / ".keel").mkdir()
    shutil.copy(mlflow_template, tmp_path / ".keel" / "mlflow.db")
    spec_path = tmp_path / "keel.yaml"
    runner = CliRunner()
    made = runner.invoke(app, ["init", str(data), "-o", str(spec_path), "--target", trap.target])
    assert made.exit_code == 0, made.output + made.stderr
    ran = runner.invoke(app, ["run", str(spec_path), "-q"])
    assert ran.exit_code == 0, ran.output + ran.stderr
    return spec_path


def _card(spec_path: Path) -> dict:
    return json.loads(
        (spec_path.parent / ".keel" / "cards" / "table" / "v1" / "model_card.json").read_text()
    )


@pytest.mark.parametrize("name", list(TRAPS))
def test_a_starter_spec_trains_unedited_and_safely(
    tmp_path: Path, mlflow_template: Path, name: str
) -> None:
    trap = TRAPS[name]()
    spec_path = _init_and_run(tmp_path, mlflow_template, trap)
    spec = load_spec(spec_path)
    written = yaml.safe_load(spec_path.read_text())

    model, _ = Registry.for_project(tmp_path / ".keel").load_model("table", 1)
    features = set(model.preprocessor.inputs())
    assert features, "the model has inputs"
    assert not features & trap.never_features, sorted(features & trap.never_features)
    assert trap.protected <= set(spec.protected)
    for column, codes in trap.sentinels.items():
        assert sorted(spec.contract.columns[column].missing_values) == codes
    unexpected = {
        c: rule.missing_values
        for c, rule in spec.contract.columns.items()
        if rule.missing_values and c not in trap.sentinels
    }
    assert not unexpected, unexpected
    gates = spec.gates.model_dump(exclude_none=True)
    assert {"min_auc_over_baseline", "max_train_test_gap", "max_ece", "min_auc"} <= set(gates)
    assert written["reasons"] == {"texts": {}} and written["reviewed"] is False

    card = _card(spec_path)
    texts = {t["feature"]: t["text"] for t in card["reasons"]["texts"]}
    assert texts == {f: f for f in model.features}  # the feature's name, never a data note
    given = json.dumps(card["reasons"])
    assert "observed" not in given and "distinct" not in given
    review = [g for g in card["gates"] if g["name"] == "spec_reviewed"]
    assert len(review) == 1 and review[0]["passed"] is False
    assert card["lifecycle"]["state"] == "candidate"


def test_the_review_flag_is_what_blocks_a_good_starter_model(
    tmp_path: Path, mlflow_template: Path
) -> None:
    trap = _credit()
    spec_path = _init_and_run(tmp_path, mlflow_template, trap)
    first = {g["name"]: g for g in _card(spec_path)["gates"]}
    assert first["spec_reviewed"]["passed"] is False
    assert first["min_auc_over_baseline"]["value"] is not None

    text = spec_path.read_text().replace("reviewed: false", "reviewed: true")
    spec_path.write_text(text)
    ran = CliRunner().invoke(app, ["run", str(spec_path), "-q"])
    assert ran.exit_code == 0, ran.output + ran.stderr
    card = json.loads(
        (tmp_path / ".keel" / "cards" / "table" / "v2" / "model_card.json").read_text()
    )
    gates = {g["name"]: g for g in card["gates"]}
    assert "spec_reviewed" not in gates  # a reviewed spec sets no review gate
    assert card["lifecycle"]["state"] == (
        "validated" if all(g["passed"] is True for g in gates.values()) else "candidate"
    )
    others = {n: g["passed"] for n, g in first.items() if n != "spec_reviewed"}
    assert others == {n: g["passed"] for n, g in gates.items() if n != "spec_reviewed"}


def test_a_sentinel_code_scores_online_exactly_as_a_missing_value_offline(
    tmp_path: Path,
) -> None:
    """96 and 98 mean "unknown" in num_dependents: training read them as missing, and a
    request holding either scores exactly as one holding null, and as the table row does."""
    from fastapi.testclient import TestClient

    from keel.contracts.profile import profile_table, starter_spec
    from keel.lifecycle.run import prepare_data
    from keel.serving.app import create_app
    from keel.serving.served import ServedModel
    from keel.spec import parse_spec
    from keel.training.trainer import train_model

    trap = _credit(rows=1200)
    data = tmp_path / "table.csv"
    trap.frame.to_csv(data, index=False)
    raw = starter_spec(
        profile_table(pd.read_csv(data)), source=str(data), project="table", target="default"
    )
    raw["tuning"] = {"trials": 3}
    spec = parse_spec(raw)
    frame = prepare_data(spec).frame
    coded = trap.frame["num_dependents"].isin([96, 98]).to_numpy()
    assert coded.any() and frame["num_dependents"].isna().to_numpy().tolist() == coded.tolist()
    model = train_model(frame, spec).model
    client = TestClient(create_app(ServedModel(model, "table", 1)))

    row = frame[coded].iloc[0]
    record = {c: (None if pd.isna(row[c]) else row[c].item()) for c in model.preprocessor.inputs()}
    scores = {}
    for value in (None, 96, 98, 2):
        answer = client.post("/v1/score", json={**record, "num_dependents": value})
        assert answer.status_code == 200, answer.text
        scores[value] = answer.json()
    assert scores[96] == {**scores[None], "request_id": scores[96]["request_id"]}
    assert scores[98]["probability"] == scores[None]["probability"]
    assert scores[None]["probability"] == model.predict_proba(frame[coded].iloc[:1])[0]
    refused = client.post("/v1/score", json={**record, "num_dependents": 97})
    assert refused.status_code == 422  # not a code: 97 is outside the observed 0-5
