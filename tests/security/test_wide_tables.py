"""A table far wider than any model needs is refused before its rows are parsed.

Issue 15, finding 9.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from keel.errors import DataError
from keel.io.tables import read_table
from keel.lifecycle.run import prepare_data
from keel.spec import load_spec

from factories import loans_spec, make_loans, write_project


def test_a_million_column_csv_is_refused_at_once(tmp_path: Path) -> None:
    wide = tmp_path / "wide.csv"
    columns = 1_000_000
    wide.write_text(
        ",".join(f"c{i}" for i in range(columns))
        + "\n"
        + ",".join("1" for _ in range(columns))
        + "\n"
    )
    start = time.perf_counter()
    with pytest.raises(
        DataError,
        match=r"has 1,000,000 columns, more than the 10,000 accepted \(data.max_columns\)",
    ):
        read_table(str(wide), "csv")
    assert (
        time.perf_counter() - start < 10
    )  # the header is counted; no frame of a million columns is built


def test_the_limit_is_the_specs_and_applies_to_parquet_too(tmp_path: Path) -> None:
    frame = make_loans(200)
    spec_path = write_project(
        tmp_path / "loans",
        frame,
        {**loans_spec("data.csv"), "data": {"source": "data.csv", "max_columns": 3}},
    )
    with pytest.raises(DataError, match="more than the 3 accepted"):
        prepare_data(load_spec(spec_path))
    frame.to_parquet(tmp_path / "loans.parquet")
    with pytest.raises(DataError, match=f"has {frame.shape[1]} columns, more than the 2 accepted"):
        read_table(str(tmp_path / "loans.parquet"), "parquet", max_columns=2)
    assert read_table(str(tmp_path / "loans.parquet"), "parquet").frame.shape == frame.shape
    pd.testing.assert_frame_equal(
        read_table(str(tmp_path / "loans.parquet"), "parquet").frame, frame
    )
