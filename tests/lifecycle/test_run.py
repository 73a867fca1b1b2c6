"""End to end on a small synthetic project: run, register, document, evaluate, refuse."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from keel.cli.main import app
from keel.errors import DataError
from keel.lifecycle.evaluate import evaluate_version
from keel.lifecycle.run import run_project
from keel.registry.store import Registry
from keel.spec import load_spec

pytestmark = pytest.mark.slow


def _registry(spec_path: Path) -> Registry:
    return Registry.for_project(spec_path.parent / ".keel")


def _version_count(spec_path: Path) -> int:
    registry = _registry(spec_path)
    return len(registry.versions("loans")) if "loans" in registry.model_names() else 0


def test_run_registers_a_documented_version(loans_project: Path) -> None:
    spec = load_spec(loans_project)
    result = run_project(spec, project_dir=loans_project.parent / ".keel", author="ana")

    assert result.version == 1
    assert result.metrics["test"]["auc"] > 0.7
    registry = _registry(loans_project)
    model, info = registry.load_model("loans", 1)
    assert info.tag("model_sha256") == result.model_sha256
    assert info.tag("author") == "ana"
    assert "gender" not in model.preprocessor.inputs()
    assert model.features == ["income", "debt", "late_payments", "region", "debt_to_income"]

    run = registry._client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test_auc"] == pytest.approx(result.metrics["test"]["auc"])
    for name in ("auc", "ks", "average_precision"):  # the card's bootstrap intervals, in MLflow
        low, high = run.data.metrics[f"test_{name}_low"], run.data.metrics[f"test_{name}_high"]
        assert low <= result.metrics["test"][name] <= high
        assert low < high
    assert run.data.params["family"] == result.family
    assert (
        run.data.tags["keel.data_sha256"]
        == hashlib.sha256((loans_project.parent / "data.csv").read_bytes()).hexdigest()
    )
    logged = {a.path for a in registry._client.list_artifacts(result.run_id)}
    assert {"model", "spec", "data", "tuning", "model_card", "environment.json"} <= logged

    html = result.card_html.read_text()
    assert f"{result.metrics['test']['auc']:.4f}" in html
    card = json.loads(result.card_json.read_text())
    assert card["version"] == 1 and card["method"]["protected"] == ["gender"]
    assert [g["name"] for g in card["gates"]] == ["min_auc"]


def test_same_spec_and_seed_give_byte_identical_model_files(loans_project: Path) -> None:
    spec = load_spec(loans_project)
    first = run_project(spec, project_dir=loans_project.parent / ".keel", with_card=False)
    second = run_project(spec, project_dir=loans_project.parent / ".keel", with_card=False)

    registry = _registry(loans_project)
    folders = [
        Path(registry.version("loans", r.version).source.removeprefix("file://"))
        for r in (first, second)
    ]
    digests = [
        {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir())}
        for folder in folders
    ]
    assert second.version == first.version + 1
    assert digests[0] == digests[1]
    assert len(digests[0]) == 2


def test_evaluate_recreates_the_test_split(loans_project: Path) -> None:
    spec = load_spec(loans_project)
    result = run_project(spec, project_dir=loans_project.parent / ".keel", with_card=False)
    evaluation = evaluate_version(
        spec, project_dir=loans_project.parent / ".keel", version=result.version
    )

    assert evaluation.metrics == pytest.approx(result.metrics["test"], rel=1e-12)
    assert json.loads(evaluation.report.read_text())["metrics"]["auc"] == pytest.approx(
        evaluation.metrics["auc"]
    )


def test_evaluate_refuses_to_recreate_a_split_from_changed_data(loans_project: Path) -> None:
    spec = load_spec(loans_project)
    run_project(spec, project_dir=loans_project.parent / ".keel", with_card=False)
    data = loans_project.parent / "data.csv"
    frame = pd.read_csv(data)
    frame.iloc[:-1].to_csv(data, index=False)

    with pytest.raises(DataError, match="cannot be re-created"):
        evaluate_version(spec, project_dir=loans_project.parent / ".keel")
    other = evaluate_version(spec, project_dir=loans_project.parent / ".keel", source=str(data))
    assert other.rows == len(frame) - 1


def test_a_failure_after_registration_leaves_no_version(
    loans_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keel.reports.model_card as model_card

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(model_card, "write_model_card", broken)
    spec = load_spec(loans_project)
    with pytest.raises(OSError, match="disk full"):
        run_project(spec, project_dir=loans_project.parent / ".keel")

    assert _version_count(loans_project) == 0
    runs = _registry(loans_project)._client.search_runs(
        [_registry(loans_project).experiment_id("loans")], max_results=5
    )
    assert [r.info.status for r in runs] == ["FAILED"]


def _break(spec_path: Path, how: str) -> None:
    spec = yaml.safe_load(spec_path.read_text())
    data_path = spec_path.parent / "data.csv"
    frame = pd.read_csv(data_path)
    if how == "typo":
        spec["tuning"]["trails"] = spec["tuning"].pop("trials")
        spec_path.write_text(yaml.safe_dump(spec))
    elif how == "missing column":
        frame.drop(columns=["debt"]).to_csv(data_path, index=False)
    elif how == "wrong type":
        frame["income"] = frame["income"].astype(object)
        frame.loc[5, "income"] = "high"
        frame.to_csv(data_path, index=False)
    elif how == "out of range":
        frame.loc[[3, 9], "late_payments"] = 99
        frame.to_csv(data_path, index=False)


@pytest.mark.parametrize(
    ("how", "exit_code", "message"),
    [
        ("typo", 2, r"tuning\.trails: unknown key 'trails'\. Did you mean 'trials'\?"),
        ("missing column", 4, r"column 'debt', rule present"),
        ("wrong type", 4, r"column 'income', rule dtype int: 1 row\(s\) fail .*row 5: 'high'"),
        (
            "out of range",
            4,
            r"column 'late_payments', rule max: 30\.0: 2 row\(s\) fail; "
            r"e\.g\. row 3: 99, row 9: 99",
        ),
    ],
)
def test_bad_spec_or_data_exits_non_zero_and_registers_nothing(
    loans_project: Path, how: str, exit_code: int, message: str
) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["train", str(loans_project), "-q"])
    assert ok.exit_code == 0, ok.output
    assert _version_count(loans_project) == 1

    _break(loans_project, how)
    result = runner.invoke(app, ["run", str(loans_project), "-q"])

    assert result.exit_code == exit_code
    assert re.search(message, " ".join(result.stderr.split())), result.stderr
    assert _version_count(loans_project) == 1
