"""keel.spark on a local Spark session: Parquet written by Spark, scored as `keel score` scores it.

One ``local[2]`` session serves the module; the model is a small LightGBM champion, approved
and promoted through governance as in production.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.errors import PythonException
from pyspark.sql import DataFrame, SparkSession
from typer.testing import CliRunner

from keel.cli.main import app
from keel.errors import DataError, EngineError, IntegrityError
from keel.registry.governance import Governance
from keel.serving.loader import load_alias
from keel.spark import (
    output_schema,
    score_champion,
    score_dataframe,
    score_dataframe_from_folder,
)
from keel.spec import parse_spec
from keel.training.trainer import train_model

from factories import loans_spec, make_loans, register_version
from people import crown, enrol

pytestmark = pytest.mark.slow

SCORES = ["loan_id", "probability", "decision", "model", "version", "reasons"]


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    """One quiet local Spark session for the module; its Python workers run this interpreter."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYSPARK_PYTHON", sys.executable)  # read once, when the session starts
        session = (
            SparkSession.builder.master("local[2]")
            .appName("keel-spark-test")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.sql.warehouse.dir", str(tmp_path_factory.mktemp("warehouse")))
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .config("spark.sql.execution.arrow.maxRecordsPerBatch", "400")  # batches per part
            .getOrCreate()
        )
        session.sparkContext.setLogLevel("ERROR")
        yield session
        session.stop()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Path:
    """A project whose champion, loans v1, is a LightGBM model; returns its .keel folder."""
    folder = tmp_path_factory.mktemp("spark-project")
    project_dir = folder / ".keel"
    project_dir.mkdir()
    shutil.copy(mlflow_template, project_dir / "mlflow.db")
    people = enrol(project_dir)
    raw = loans_spec("unused.csv", tuning={"trials": 2}, models={"families": ["lightgbm"]})
    train_model(make_loans(rows=1500, seed=2), parse_spec(raw)).model.save(folder / "model")
    register_version(people.service.governance, folder / "model", author=people.dev)
    crown(people, "loans", 1)
    return project_dir


@pytest.fixture(scope="module")
def written(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """New loans with some gaps, written by Spark as a folder of two Parquet parts."""
    rows = make_loans(rows=2000, seed=9).drop(columns="defaulted")
    rows["late_payments"] = rows["late_payments"].astype("float64")
    rows.loc[rows.index % 7 == 0, "late_payments"] = np.nan
    rows["region"] = rows["region"].astype(object)
    rows.loc[rows.index % 11 == 0, "region"] = None
    folder = tmp_path_factory.mktemp("spark-input") / "loans.parquet"
    spark.createDataFrame(rows).repartition(2).write.parquet(str(folder))
    return folder


def _keel_score(project_dir: Path, source: Path, target: Path, *extra: str) -> pd.DataFrame:
    """`keel score` of one Parquet file, as its output table."""
    result = CliRunner().invoke(
        app,
        [
            "score",
            "--project-dir",
            str(project_dir),
            "--model",
            "loans",
            "--input",
            str(source),
            "--output",
            str(target),
            "--keep",
            "loan_id",
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output
    return pd.read_parquet(target)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("loan_id").reset_index(drop=True)


def test_spark_scores_parquet_from_spark_exactly_as_keel_score(
    spark: SparkSession, project: Path, written: Path, tmp_path: Path
) -> None:
    parts = sorted(written.glob("part-*.parquet"))
    cli = _sorted(
        pd.concat(
            [_keel_score(project, p, tmp_path / f"cli-{i}.parquet") for i, p in enumerate(parts)]
        )
    )
    df = spark.read.parquet(str(written))

    scored = score_champion(
        df, Governance.for_project(project, writer=False), "loans", keep=["loan_id"]
    )
    got = _sorted(scored.toPandas())

    assert len(parts) == 2 and len(cli) == len(got) == 2000
    assert [(f.name, f.dataType.simpleString()) for f in scored.schema.fields] == [
        ("loan_id", "bigint"),
        ("probability", "double"),
        ("decision", "string"),
        ("model", "string"),
        ("version", "bigint"),
        ("reasons", "string"),
    ]
    assert list(got.columns) == list(cli.columns) == SCORES
    assert got["loan_id"].tolist() == cli["loan_id"].tolist()
    assert got["probability"].dtype == cli["probability"].dtype == np.float64
    assert (
        got["probability"].to_numpy().view(np.int64) == cli["probability"].to_numpy().view(np.int64)
    ).all()
    assert got["decision"].tolist() == cli["decision"].tolist()
    assert set(got["decision"]) == {"adverse", "favourable"}
    assert got["reasons"].tolist() == cli["reasons"].tolist()  # the same JSON text
    assert any(json.loads(r) for r in got["reasons"])
    assert set(got["model"]) == {"loans"} and set(got["version"]) == {1}


def test_without_reasons_the_columns_are_those_of_keel_score_no_reasons(
    spark: SparkSession, project: Path, written: Path, tmp_path: Path
) -> None:
    part = sorted(written.glob("part-*.parquet"))[0]
    cli = _sorted(_keel_score(project, part, tmp_path / "cli.parquet", "--no-reasons"))
    engine_df = spark.read.parquet(str(part))
    engine = load_alias(Governance.for_project(project, writer=False), "loans")

    got = _sorted(score_dataframe(engine_df, engine, keep=["loan_id"], reasons=False).toPandas())

    assert list(got.columns) == list(cli.columns) == SCORES[:-1]
    assert got["probability"].tolist() == cli["probability"].tolist()
    assert got["decision"].tolist() == cli["decision"].tolist()


def test_an_altered_model_is_refused_on_the_executor(
    spark: SparkSession, project: Path, written: Path, tmp_path: Path
) -> None:
    """The driver checks the folder, then the files change before the job runs: executors refuse."""
    folder = shutil.copytree(project.parent / "model", tmp_path / "model")
    sha = Governance.for_project(project, writer=False).registered_sha256("loans", 1)
    df: DataFrame = spark.read.parquet(str(written))
    lazy = score_dataframe_from_folder(df, folder, sha256=sha, name="loans", version=1)
    manifest = json.loads((folder / "model.json").read_text())
    manifest["threshold"] = 0.01  # everyone is adverse now
    (folder / "model.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))

    with pytest.raises(
        PythonException,
        match=r"IntegrityError: a Spark executor refused model loans v1: .*model\.json: sha256 "
        r"[0-9a-f]{64} does not match the registered " + sha,
    ):
        lazy.collect()
    with pytest.raises(IntegrityError, match="does not match the registered"):
        score_dataframe_from_folder(df, folder, sha256=sha, name="loans", version=1)


def test_bad_arguments_are_refused_before_any_job(
    spark: SparkSession, project: Path, written: Path
) -> None:
    df = spark.read.parquet(str(written))
    engine_sha = Governance.for_project(project, writer=False).registered_sha256("loans", 1)
    engine = load_alias(Governance.for_project(project, writer=False), "loans")

    with pytest.raises(DataError, match=r"no column\(s\) \['customer'\] to keep"):
        score_dataframe(df, engine, keep=["customer"])
    with pytest.raises(DataError, match=r"cannot keep \['decision'\]"):
        score_dataframe(df.withColumn("decision", df["region"]), engine, keep=["decision"])
    with pytest.raises(DataError, match="use score_dataframe, which ships its bytes"):
        score_dataframe_from_folder(
            df, "s3://bucket/loans/1", sha256=engine_sha, name="loans", version=1
        )


def test_keel_spark_imports_pyspark_only_when_used(
    spark: SparkSession, written: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyspark is not a dependency: importing keel.spark does not need it, using it names it."""
    probe = "import sys, keel.spark; print('pyspark' in sys.modules)"
    imported = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    df = spark.read.parquet(str(written))
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)  # as if it were not installed

    with pytest.raises(EngineError, match="keel.spark needs pyspark .*pip install pyspark"):
        output_schema(df, ["loan_id"])
    assert imported.stdout.strip() == "False"
