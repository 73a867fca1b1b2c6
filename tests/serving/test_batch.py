"""Batch scoring: chunked, the API's numbers and reasons, and no partial output on failure."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keel.errors import DataError
from keel.serving.batch import score_file
from keel.serving.served import ServedModel
from keel.spec import parse_spec
from keel.training.trainer import train_model

from factories import loans_spec, make_loans


@pytest.fixture(scope="module")
def engine() -> ServedModel:
    raw = loans_spec("unused.csv", tuning={"trials": 2}, models={"families": ["lightgbm"]})
    return ServedModel(
        train_model(make_loans(rows=1500, seed=2), parse_spec(raw)).model, "loans", 2
    )


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_chunked_file_scoring_matches_the_engine_row_for_row(
    engine: ServedModel, tmp_path: Path, suffix: str
) -> None:
    rows = make_loans(rows=2500, seed=4)
    source = tmp_path / f"in.{suffix}"
    rows.to_csv(source, index=False) if suffix == "csv" else rows.to_parquet(source, index=False)
    chunks: list[int] = []

    total = score_file(
        engine,
        str(source),
        str(tmp_path / "out.parquet"),
        keep=["loan_id"],
        chunk_rows=700,
        on_chunk=chunks.append,
    )

    scored = pd.read_parquet(tmp_path / "out.parquet")
    expected = engine.score_frame(rows)
    assert total == 2500 and sum(chunks) == 2500 and len(chunks) >= 3
    assert scored["loan_id"].tolist() == rows["loan_id"].tolist()
    assert scored["probability"].tolist() == [d["probability"] for d in expected]
    assert [json.loads(r) for r in scored["reasons"]] == [d["reasons"] for d in expected]
    assert set(scored["version"]) == {2} and set(scored["decision"]) <= {"adverse", "favourable"}
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def test_a_failure_midway_leaves_no_output_and_no_partial_file(
    engine: ServedModel, tmp_path: Path
) -> None:
    rows = make_loans(rows=1000, seed=4).astype({"income": str})
    rows.loc[900, "income"] = "unknown"  # a bad value in the second chunk
    source = tmp_path / "in.parquet"
    rows.to_parquet(source, index=False)

    with pytest.raises(DataError, match="column .income. must be numeric"):
        score_file(engine, str(source), str(tmp_path / "out.parquet"), chunk_rows=500)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]


def test_output_must_be_parquet_and_kept_columns_must_exist(
    engine: ServedModel, tmp_path: Path
) -> None:
    source = tmp_path / "in.parquet"
    make_loans(rows=10).to_parquet(source, index=False)

    with pytest.raises(DataError, match="as Parquet"):
        score_file(engine, str(source), str(tmp_path / "out.csv"))
    with pytest.raises(DataError, match=r"no column\(s\) \['customer'\]"):
        score_file(engine, str(source), str(tmp_path / "out.parquet"), keep=["customer"])


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_kept_columns_keep_their_type_when_later_chunks_have_gaps(
    engine: ServedModel, tmp_path: Path, suffix: str
) -> None:
    """A kept column whose first chunk has no missing value (ints) or only missing values.

    Later chunks differ.
    """
    rows = make_loans(rows=300, seed=5)
    rows["branch"] = pd.array([7] * 100 + [None] * 100 + [9] * 100, dtype="Int64")  # int, then gaps
    rows["note"] = pd.array([None] * 100 + ["call back"] * 200, dtype="string")  # empty first chunk
    source, target = tmp_path / f"in.{suffix}", tmp_path / "out.parquet"
    if suffix == "csv":
        rows.to_csv(source, index=False)
    else:  # without pandas' metadata, as Spark or DuckDB would write it
        pq.write_table(
            pa.Table.from_pandas(rows, preserve_index=False).replace_schema_metadata(None), source
        )

    score_file(engine, str(source), str(target), keep=["loan_id", "branch", "note"], chunk_rows=100)
    out = pd.read_parquet(target)

    assert out["branch"].isna().sum() == 100
    assert out["branch"].dropna().tolist() == [7] * 100 + [9] * 100
    assert out["note"].isna().sum() == 100 and (out["note"].iloc[100:] == "call back").all()
    assert out["loan_id"].tolist() == rows["loan_id"].tolist()


def test_batch_scoring_reads_the_contracts_missing_codes_as_missing(tmp_path: Path) -> None:
    """A code the contract reads as "unknown" scores in a file exactly as an empty cell does,
    as it does in training and on the API."""
    raw = loans_spec("unused.csv", tuning={"trials": 2, "folds": 1})
    raw["contract"]["columns"]["late_payments"] = {
        "dtype": "int",
        "min": 0,
        "max": 30,
        "nullable": True,
        "missing_values": [99],
    }
    frame = make_loans(rows=1500, seed=3)
    frame["late_payments"] = frame["late_payments"].astype("Int64")
    frame.loc[frame.index[::7], "late_payments"] = pd.NA
    served = ServedModel(train_model(frame, parse_spec(raw)).model, "loans", 1)
    rows = make_loans(rows=40, seed=4).drop(columns="defaulted")
    coded, empty = rows.copy(), rows.astype({"late_payments": "Int64"})
    coded.loc[coded.index[:20], "late_payments"] = 99
    empty.loc[empty.index[:20], "late_payments"] = pd.NA
    for name, table in (("coded", coded), ("empty", empty)):
        table.to_parquet(tmp_path / f"{name}.parquet")
        score_file(served, str(tmp_path / f"{name}.parquet"), str(tmp_path / f"{name}-out.parquet"))
    got = {n: pd.read_parquet(tmp_path / f"{n}-out.parquet") for n in ("coded", "empty")}
    assert got["coded"]["probability"].tolist() == got["empty"]["probability"].tolist()
    assert got["coded"]["reasons"].tolist() == got["empty"]["reasons"].tolist()
    as_number = served.score_matrix(served.model.preprocessor.transform(coded))
    assert [d["probability"] for d in as_number] != got["coded"]["probability"].tolist()
