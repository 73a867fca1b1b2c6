"""`keel check`: spec, contract, training on a sample and gates, with its documented exit codes."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from keel.cli.main import app

from factories import loans_spec, make_loans, write_project
from people import enrol

pytestmark = pytest.mark.slow


def _spec(**overrides: Any) -> dict[str, Any]:
    return loans_spec("data.csv", models={"families": ["logistic"]}, **overrides)


@pytest.fixture(scope="module")
def loans() -> pd.DataFrame:
    return make_loans(rows=1500)


def _check(spec: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["check", str(spec), "-q", *args])
    return result.exit_code, result.output + result.stderr


def _governed(spec: Path, mlflow_template: Path) -> Any:
    """The project's store with its users (the MLflow tables copied, not migrated again)."""
    keel_dir = spec.parent / ".keel"
    keel_dir.mkdir()
    shutil.copy(mlflow_template, keel_dir / "mlflow.db")
    return enrol(keel_dir)


def _files(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_good_spec_passes_on_a_sample_and_writes_no_state(
    loans: pd.DataFrame, tmp_path: Path, mlflow_template: Path
) -> None:
    spec = write_project(tmp_path / "p", loans, _spec())
    keel_dir = spec.parent / ".keel"
    _governed(spec, mlflow_template)  # a governance store with users: check must leave it alone
    before = _files(keel_dir)

    code, output = _check(spec, "--sample-rows", "800", "--report", str(tmp_path / "r.json"))

    assert code == 0, output
    assert "check passed" in output and "contract passed on 1500 rows" in output
    assert "tightened by policy v0" in output and "min_auc" in output
    assert _files(keel_dir) == before  # nothing registered, no audit row, no new file
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["passed"] is True and report["rows"] == 1500 and report["sampled"] == 800
    assert report["trials"] == 3 and report["gates"][0]["name"] == "min_auc"


def test_a_gate_the_model_cannot_pass_exits_1(loans: pd.DataFrame, tmp_path: Path) -> None:
    spec = write_project(tmp_path / "p", loans, _spec(gates={"min_auc": 0.99}))

    code, output = _check(spec, "--trials", "1")

    assert code == 1, output
    assert "check failed" in output and "min_auc" in output and "fail" in output
    assert "the spec's alone: no governance store" in output
    assert not (spec.parent / ".keel").exists()


def test_the_governance_policy_tightens_the_spec_gates(
    loans: pd.DataFrame, tmp_path: Path, mlflow_template: Path
) -> None:
    spec = write_project(tmp_path / "p", loans, _spec())
    people = _governed(spec, mlflow_template)
    people.service.governance.set_policy(
        by=people.val, reason="a test policy", thresholds={"min_auc": 0.99}
    )

    code, output = _check(spec, "--trials", "1")

    assert code == 1, output
    assert "tightened by policy v1" in output and "0.99" in output


def test_a_typo_in_the_spec_exits_2_naming_the_key(loans: pd.DataFrame, tmp_path: Path) -> None:
    raw = _spec()
    raw["gatez"] = raw.pop("gates")
    spec = write_project(tmp_path / "p", loans, raw)

    code, output = _check(spec)

    assert code == 2, output
    assert "gatez" in output


def test_data_that_breaks_the_contract_exits_4_with_its_report(
    loans: pd.DataFrame, tmp_path: Path
) -> None:
    broken = loans.astype({"region": object})
    broken.loc[[3, 40], "region"] = "middle"
    spec = write_project(tmp_path / "p", broken, _spec())

    code, output = _check(spec, "--report", str(tmp_path / "r.json"))

    assert code == 4, output
    assert "Data contract broken" in output and "region" in output
    assert "middle" in (tmp_path / "r.contract.json").read_text()
    assert not (tmp_path / "r.json").exists()


def test_data_that_cannot_be_read_exits_3(tmp_path: Path) -> None:
    spec = tmp_path / "keel.yaml"
    spec.write_text(yaml.safe_dump(_spec()))  # data.csv is not there

    code, output = _check(spec)

    assert code == 3, output
    assert "data.csv" in output
