"""The credit-default example on the real UCI data.

The numbers the README promises, and the card a reviewer reads.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from keel.cli.main import app
from keel.explain.contributions import Explainer
from keel.lifecycle.run import prepare_data, run_project
from keel.models.artifact import KeelModel
from keel.registry.store import Registry
from keel.spec import load_spec, parse_spec

from people import enrol

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "credit_default"


def _project_dir(tmp_path: Path, template: Path) -> Path:
    folder = tmp_path / ".keel"
    folder.mkdir()
    shutil.copy(template, folder / "mlflow.db")
    return folder


@pytest.mark.filterwarnings("ignore:LightGBM binary classifier:UserWarning")
def test_credit_example_reaches_its_auc_in_cli_mlflow_and_card(
    tmp_path: Path, mlflow_template: Path
) -> None:
    project_dir = _project_dir(tmp_path, mlflow_template)
    people = enrol(project_dir)

    result = CliRunner().invoke(
        app,
        ["run", str(EXAMPLE / "keel.yaml"), "--project-dir", str(project_dir), "-q"],
        env={"KEEL_TOKEN": people.tokens["ana"]},
    )

    assert result.exit_code == 0, result.output + result.stderr
    shown = float(re.search(r"Test AUC: (\d\.\d{4})", result.output).group(1))
    assert shown >= 0.78
    registry = Registry.for_project(project_dir)
    info = registry.version("credit_default", 1)
    run = registry._client.get_run(info.run_id)
    assert run.data.metrics["test_auc"] >= 0.78
    assert f"{run.data.metrics['test_auc']:.4f}" == f"{shown:.4f}"
    card_path = project_dir / "cards" / "credit_default" / "v1"
    assert f"{shown:.4f}" in (card_path / "model_card.html").read_text()
    card = json.loads((card_path / "model_card.json").read_text())
    assert card["data"]["rows_read"] == 30000 and card["data"]["duplicates_dropped"] == 35
    assert card["data"]["recoded"]["EDUCATION"] == {"0 -> 4": 14, "5 -> 4": 280, "6 -> 4": 51}
    assert card["data"]["recoded"]["MARRIAGE"] == {"0 -> 3": 54}
    assert not {"SEX", "AGE", "MARRIAGE", "EDUCATION"} & set(card["method"]["features"])
    assert (
        card["data"]["sha256"] == "a0f0ab49d6326671d6cd83be5c88dcf18007025fe9a53ecd699119c871176ca1"
    )
    html = (card_path / "model_card.html").read_text()
    _check_fairness_gates_and_reasons(card, html)
    _check_a_refused_approval_leaves_the_history_on_the_card(
        project_dir, card_path, people.tokens["vera"]
    )
    model, _ = registry.load_model("credit_default", 1)
    _check_contributions_against_shap_and_the_margin(model)


def _check_fairness_gates_and_reasons(card: dict, html: str) -> None:
    fairness = {entry["attribute"]: entry for entry in card["fairness"]}
    assert list(fairness) == ["SEX", "AGE", "MARRIAGE", "EDUCATION"]
    assert [g["group"] for g in fairness["AGE"]["groups"]] == [
        "< 25",
        "25 to < 35",
        "35 to < 45",
        "45 to < 60",
        ">= 60",
    ]
    assert {g["group"] for g in fairness["SEX"]["groups"]} == {"male", "female"}
    assert {g["group"] for g in fairness["MARRIAGE"]["groups"]} == {"married", "single", "others"}
    assert {g["group"] for g in fairness["EDUCATION"]["groups"]} == {
        "graduate school",
        "university",
        "high school",
        "others",
    }
    for attribute in fairness:
        assert f"<h3>{attribute}: adverse impact ratio" in html
    assert "<td>25 to &lt; 35</td>" in html and "<td>graduate school</td>" in html

    names = [gate["name"] for gate in card["gates"]]
    assert names[:4] == ["min_auc", "min_ks", "max_ece", "max_train_test_gap"]
    assert {f"min_adverse_impact_ratio[{a}]" for a in fairness} | {
        f"max_equal_opportunity_difference[{a}]" for a in fairness
    } == set(names[4:])
    gates = html[html.find('id="gates"') : html.find('id="lifecycle"')]
    for gate in card["gates"]:
        status = "pass" if gate["passed"] else "fail"
        assert re.search(
            rf"<td>{re.escape(gate['name'])}</td>(?:(?!</tr>).)*>{status}</span>", gates, flags=re.S
        )

    reasons = card["reasons"]
    assert reasons["top_k"] == 4 and {row["source"] for row in reasons["texts"]} == {"spec"}
    assert "Every feature has a reason text in the spec." in html
    assert reasons["frequency"][0]["text"] in html and "Recent payment delinquency" in html
    assert len(reasons["examples"]) == 4
    assert all(0 < len(example["reasons"]) <= 4 for example in reasons["examples"])
    assert [item["feature"] for item in card["explanations"]["importance"]] != []
    assert len(card["explanations"]["dependence"]) == 4


def _check_a_refused_approval_leaves_the_history_on_the_card(
    project_dir: Path, card_path: Path, token: str
) -> None:
    """The credit version fails gates (see README): even another validator's approval is refused."""
    card = json.loads((card_path / "model_card.json").read_text())
    failing = [gate["name"] for gate in card["gates"] if gate["passed"] is not True]
    assert failing and card["lifecycle"]["state"] == "candidate"
    (register,) = card["lifecycle"]["history"]
    assert (register["action"], register["actor"], register["role"]) == (
        "register",
        "ana",
        "developer",
    )
    assert register["gates"] == card["gates"]

    approve = CliRunner().invoke(
        app,
        [
            "approve",
            "1",
            "--note",
            "reviewed the card",
            "--model",
            "credit_default",
            "--project-dir",
            str(project_dir),
        ],
        env={"KEEL_TOKEN": token},
    )

    assert approve.exit_code == 8
    assert "'candidate'; only a validated version can be approved" in " ".join(
        approve.stderr.split()
    )
    shown = CliRunner().invoke(
        app, ["card", "credit_default", "1", "--project-dir", str(project_dir)]
    )
    assert shown.exit_code == 0, shown.stderr
    after = json.loads((card_path / "model_card.json").read_text())
    assert (
        after["lifecycle"]["state"] == "candidate"
    )  # the refused attempt is on the record, nothing changed
    assert [(r["action"], r["actor"]) for r in after["lifecycle"]["history"]] == [
        ("register", "ana"),
        ("refused", "vera"),
    ]
    html = (card_path / "model_card.html").read_text()
    assert (
        '<span class="state">candidate</span>' in html
        and "<td>register</td><td>ana</td><td>developer</td>" in html
    )


def _check_contributions_against_shap_and_the_margin(model: KeelModel) -> None:
    shap = pytest.importorskip("shap")
    assert model.family == "lightgbm"
    X = model.preprocessor.transform(
        prepare_data(load_spec(EXAMPLE / "keel.yaml")).frame.iloc[::30]
    )
    assert 990 <= len(X) <= 1010

    ours = Explainer(model).explain_matrix(X)
    explainer = shap.TreeExplainer(model.scorer.booster)
    expected = np.asarray(explainer.shap_values(X))
    expected = expected[-1] if expected.ndim == 3 else expected

    assert np.abs(ours.values - expected).max() < 1e-9
    assert abs(ours.base - float(np.ravel(explainer.expected_value)[-1])) < 1e-9
    assert np.abs(ours.margin() - model.scorer.booster.predict(X, raw_score=True)).max() < 1e-9


def test_two_runs_of_the_credit_spec_give_byte_identical_model_files(
    tmp_path: Path, mlflow_template: Path
) -> None:
    raw = yaml.safe_load((EXAMPLE / "keel.yaml").read_text())
    raw["tuning"]["trials"] = 4
    spec = parse_spec(raw, base_dir=EXAMPLE)
    project_dir = _project_dir(tmp_path, mlflow_template)

    results = [run_project(spec, project_dir=project_dir, with_card=False) for _ in range(2)]

    registry = Registry.for_project(project_dir)
    digests = []
    for result in results:
        folder = Path(
            registry.version("credit_default", result.version).source.removeprefix("file://")
        )
        digests.append(
            {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in folder.iterdir()}
        )
    assert [r.version for r in results] == [1, 2]
    assert digests[0] == digests[1]
    assert results[0].model_sha256 == results[1].model_sha256 == digests[0]["model.json"]


def test_credit_spec_declares_every_column_of_the_file() -> None:
    spec = load_spec(EXAMPLE / "keel.yaml")
    header = (EXAMPLE / "data" / "UCI_Credit_Card.csv").read_text().splitlines()[0]
    assert [c.strip('"') for c in header.split(",")] == list(spec.contract.columns)
