"""Batch scoring on a real 2-process Dask cluster equals in-process batch scoring, row for row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from keel.errors import DataError
from keel.features.offline import add_features
from keel.serving.batch import score_file
from keel.serving.distributed import score_on_cluster
from keel.serving.served import ServedModel
from keel.spec import parse_spec
from keel.training.trainer import train_model

from factories import loans_spec, make_loans, make_transactions, transactions_spec
from people import crown, enrol


def _same(a: pd.DataFrame, b: pd.DataFrame, key: str) -> None:
    a, b = a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    assert list(a.columns) == list(b.columns)
    np.testing.assert_array_equal(a["probability"].to_numpy(), b["probability"].to_numpy())
    for column in a.columns.drop("probability"):
        assert a[column].tolist() == b[column].tolist(), column


def test_cluster_scoring_equals_file_scoring(dask_engine, tmp_path: Path) -> None:
    raw = loans_spec("unused.csv", tuning={"trials": 2}, models={"families": ["lightgbm"]})
    engine = ServedModel(
        train_model(make_loans(rows=1500, seed=2), parse_spec(raw)).model, "loans", 3
    )
    rows = make_loans(rows=3000, seed=5)
    source = tmp_path / "in.parquet"
    rows.to_parquet(source, index=False, row_group_size=700)
    score_file(engine, str(source), str(tmp_path / "local.parquet"), keep=["loan_id"])

    total = score_on_cluster(
        engine, dask_engine, str(source), str(tmp_path / "out"), keep=["loan_id"]
    )

    assert total == 3000
    _same(pd.read_parquet(tmp_path / "local.parquet"), pd.read_parquet(tmp_path / "out"), "loan_id")
    assert not list(tmp_path.glob("out.partial-*"))
    with pytest.raises(DataError, match="exists; batch output goes to a new folder"):
        score_on_cluster(engine, dask_engine, str(source), str(tmp_path / "out"))


def test_cluster_scoring_computes_window_features_first(dask_engine, tmp_path: Path) -> None:
    """Raw transactions in, the same scores as scoring the offline feature table in process."""
    raw = transactions_spec(
        windows={
            "card": {
                "entity": "card",
                "windows": ["1d", "7d"],
                "aggregations": {
                    "nb": {"function": "count"},
                    "avg": {"function": "mean", "column": "amount"},
                },
            }
        }
    )
    raw["tuning"] = {"trials": 2}
    raw["models"] = {"families": ["lightgbm"]}
    spec = parse_spec(raw)
    frame = make_transactions(6000, seed=8)
    engine = ServedModel(train_model(add_features(frame, spec), spec).model, "fraud", 1)
    source = tmp_path / "tx.parquet"
    frame.to_parquet(source, index=False, row_group_size=1500)
    add_features(frame, spec).to_parquet(tmp_path / "with_features.parquet", index=False)
    score_file(
        engine,
        str(tmp_path / "with_features.parquet"),
        str(tmp_path / "local.parquet"),
        keep=["tx_id"],
    )

    score_on_cluster(
        engine, dask_engine, str(source), str(tmp_path / "out"), spec=spec, keep=["tx_id"]
    )

    local, distributed = (
        pd.read_parquet(tmp_path / "local.parquet"),
        pd.read_parquet(tmp_path / "out"),
    )
    assert len(distributed) == 6000
    merged = local.merge(distributed, on="tx_id", suffixes=("_local", "_dask"))
    np.testing.assert_allclose(
        merged["probability_dask"], merged["probability_local"], rtol=1e-12, atol=1e-15
    )
    assert (merged["decision_dask"] == merged["decision_local"]).all()


def test_keel_score_on_a_local_cluster(loans_project: Path) -> None:
    from typer.testing import CliRunner

    from keel.cli.main import app
    from keel.lifecycle.run import run_project
    from keel.spec import load_spec

    project_dir = loans_project.parent / ".keel"
    people = enrol(project_dir)
    run_project(
        load_spec(loans_project), project_dir=project_dir, principal=people.dev, with_card=False
    )
    crown(people, "loans", 1)
    source = loans_project.parent / "to_score.parquet"
    make_loans(rows=900, seed=9).to_parquet(source, index=False, row_group_size=300)

    result = CliRunner().invoke(
        app,
        [
            "score",
            "--spec",
            str(loans_project),
            "--project-dir",
            str(project_dir),
            "--input",
            str(source),
            "--output",
            str(loans_project.parent / "scored"),
            "--keep",
            "loan_id",
            "--cluster",
            "local",
        ],
    )

    assert result.exit_code == 0, result.output + result.stderr
    assert "scored 900 rows with loans version 1 on tcp://127.0.0.1:" in result.output
    scored = pd.read_parquet(loans_project.parent / "scored")
    assert sorted(scored["loan_id"]) == sorted(pd.read_parquet(source)["loan_id"])
