"""`keel export mlflow`: a pickle-free MLflow pyfunc answering as `keel score`, hash-checked."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow.pyfunc
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from keel.cli.main import app
from keel.errors import IntegrityError
from keel.lifecycle.run import run_project
from keel.models.artifact import looks_like_pickle
from keel.registry.governance import Governance
from keel.spec import load_spec

from factories import loans_spec, make_loans, register_version, write_project
from people import People, crown, enrol

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Exported:
    spec: Path
    project_dir: Path
    people: People
    folder: Path
    output: str


def _keel(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output + result.stderr


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Exported:
    """The loans model registered by ana, made champion by vera and dan, exported by dan."""
    root = tmp_path_factory.mktemp("export")
    raw = loans_spec("data.csv", models={"families": ["logistic"]}, tuning={"trials": 1})
    spec = write_project(root / "loans", make_loans(rows=1200), raw)
    project_dir = spec.parent / ".keel"
    project_dir.mkdir()
    shutil.copy(mlflow_template, project_dir / "mlflow.db")
    people = enrol(project_dir)
    run_project(load_spec(spec), project_dir=project_dir, principal=people.dev, with_card=False)
    crown(people, "loans", 1)
    folder = root / "loans-mlflow"
    code, output = _keel(
        "export", "mlflow", "loans", "1", "--output", str(folder), "--spec", str(spec),
        env={"KEEL_TOKEN": people.tokens["dan"]},
    )  # fmt: skip
    assert code == 0, output
    return Exported(spec, project_dir, people, folder, output)


def test_the_exported_model_answers_exactly_as_keel_score(
    exported: Exported, tmp_path: Path
) -> None:
    rows = make_loans(rows=300, seed=11)
    rows.loc[::17, "region"] = None  # missing values travel the same way on both paths
    source = tmp_path / "in.parquet"
    rows.to_parquet(source, index=False)
    code, output = _keel(
        "score", "--spec", str(exported.spec), "--input", str(source),
        "--output", str(tmp_path / "out.parquet"),
    )  # fmt: skip
    assert code == 0, output
    scored = pd.read_parquet(tmp_path / "out.parquet")

    predicted = mlflow.pyfunc.load_model(str(exported.folder)).predict(rows)

    assert list(predicted.columns) == ["probability", "decision", "reasons", "model", "version"]
    assert predicted["probability"].tolist() == scored["probability"].tolist()
    assert predicted["decision"].tolist() == scored["decision"].tolist()
    assert [json.loads(r) for r in predicted["reasons"]] == [
        json.loads(r) for r in scored["reasons"]
    ]
    assert any(json.loads(r) for r in predicted["reasons"])  # reasons were compared, not blanks
    assert set(predicted["version"]) == {1} and set(predicted["model"]) == {"loans"}


def test_the_export_holds_no_pickle_and_says_what_it_is(exported: Exported) -> None:
    files = [p for p in exported.folder.rglob("*") if p.is_file()]
    mlmodel = yaml.safe_load((exported.folder / "MLmodel").read_text())
    flavor = mlmodel["flavors"]["python_function"]

    assert not [p for p in files if p.suffix in (".pkl", ".pickle") or "pickle" in p.name]
    assert not [p for p in files if looks_like_pickle(p.read_bytes()[:2])]
    assert flavor["loader_module"] == "mlflow.pyfunc.loaders.code_model"
    assert "python_model" not in flavor  # no cloudpickled model: models from code
    assert (exported.folder / "code" / "keel" / "export" / "pyfunc.py").is_file()
    keel = mlmodel["metadata"]["keel"]
    assert keel["state"] == "champion" and keel["version"] == 1 and keel["exported_by"] == "dan"
    assert flavor["config"]["model_sha256"] == keel["model_sha256"]
    assert [c["name"] for c in json.loads(mlmodel["signature"]["outputs"])] == [
        "probability", "decision", "reasons", "model", "version",
    ]  # fmt: skip
    requirements = (exported.folder / "requirements.txt").read_text().split()
    assert "lightgbm==" in " ".join(requirements) and not any(
        r.startswith("keel") for r in requirements
    )


def test_the_export_is_in_the_audit_log_under_who_did_it(exported: Exported) -> None:
    governance = Governance.for_project(exported.project_dir, writer=False)
    rows = [r for r in governance.history("loans") if r.action == "export"]

    assert len(rows) == 1 and rows[0].actor == exported.people.dep.actor
    assert json.loads(rows[0].after)["path"] == str(exported.folder.resolve())
    assert governance.state(governance.registry.version("loans", 1)) == "champion"
    assert governance.audit.verify() == []
    assert "champion" in exported.output and "audit row" in exported.output


@pytest.mark.parametrize("changed", ["logistic.json", "model.json"])
def test_a_changed_model_file_is_refused_on_load(exported: Exported, changed: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "copy"
        shutil.copytree(exported.folder, copy)
        target = copy / "artifacts" / "keel_model" / changed
        target.write_bytes(target.read_bytes().replace(b"1", b"2", 1))

        with pytest.raises(IntegrityError, match="does not match the sha256 recorded at export"):
            mlflow.pyfunc.load_model(str(copy))


def test_only_an_approved_version_is_exported_and_a_refusal_writes_nothing(
    exported: Exported, tmp_path: Path
) -> None:
    governance = exported.people.service.governance
    model, _ = governance.registry.load_model("loans", 1)
    model.save(tmp_path / "model")
    register_version(governance, tmp_path / "model", author=exported.people.dev)  # v2: validated
    rows_before = len(governance.audit.rows())
    spec = str(exported.spec)

    refused, said = _keel(
        "export", "mlflow", "loans", "2", "-o", str(tmp_path / "v2"), "--spec", spec
    )
    unknown, said_unknown = _keel(
        "export", "mlflow", "loans", "9", "-o", str(tmp_path / "v9"), "--spec", spec
    )
    taken, said_taken = _keel("export", "mlflow", "loans", "1", "-o", str(tmp_path), "--spec", spec)

    assert refused == 8 and "'validated'" in said and "approved, champion, retired" in said
    assert unknown == 6 and "no version 9" in said_unknown
    assert taken == 2 and "exists" in said_taken
    assert not (tmp_path / "v2").exists() and not (tmp_path / "v9").exists()
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []
    assert len(governance.audit.rows()) == rows_before
