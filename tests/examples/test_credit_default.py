"""The credit-default example on the real UCI data: the numbers the README promises."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from keel.cli.main import app
from keel.lifecycle.run import run_project
from keel.registry.store import Registry
from keel.spec import load_spec, parse_spec

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "credit_default"


def _project_dir(tmp_path: Path, template: Path) -> Path:
    folder = tmp_path / ".keel"
    folder.mkdir()
    shutil.copy(template, folder / "mlflow.db")
    return folder


def test_credit_example_reaches_its_auc_in_cli_mlflow_and_card(tmp_path: Path, mlflow_template: Path) -> None:
    project_dir = _project_dir(tmp_path, mlflow_template)

    result = CliRunner().invoke(app, ["run", str(EXAMPLE / "keel.yaml"), "--project-dir", str(project_dir), "-q"])

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
    assert card["data"]["sha256"] == "a0f0ab49d6326671d6cd83be5c88dcf18007025fe9a53ecd699119c871176ca1"


def test_two_runs_of_the_credit_spec_give_byte_identical_model_files(tmp_path: Path, mlflow_template: Path) -> None:
    raw = yaml.safe_load((EXAMPLE / "keel.yaml").read_text())
    raw["tuning"]["trials"] = 4
    spec = parse_spec(raw, base_dir=EXAMPLE)
    project_dir = _project_dir(tmp_path, mlflow_template)

    results = [run_project(spec, project_dir=project_dir, with_card=False) for _ in range(2)]

    registry = Registry.for_project(project_dir)
    digests = []
    for result in results:
        folder = Path(registry.version("credit_default", result.version).source.removeprefix("file://"))
        digests.append({f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in folder.iterdir()})
    assert [r.version for r in results] == [1, 2]
    assert digests[0] == digests[1]
    assert results[0].model_sha256 == results[1].model_sha256 == digests[0]["model.json"]


def test_credit_spec_declares_every_column_of_the_file() -> None:
    spec = load_spec(EXAMPLE / "keel.yaml")
    header = (EXAMPLE / "data" / "UCI_Credit_Card.csv").read_text().splitlines()[0]
    assert [c.strip('"') for c in header.split(",")] == list(spec.contract.columns)
