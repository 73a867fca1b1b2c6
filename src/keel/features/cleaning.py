"""Cleaning rules the spec states explicitly: code recoding and duplicate rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from keel.errors import DataError
from keel.spec import DataSpec, ProjectSpec


@dataclass(frozen=True)
class CleaningSummary:
    """What cleaning changed, for the run log and the model card."""

    rows_in: int
    rows_out: int
    duplicates_dropped: int
    recoded: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "duplicates_dropped": self.duplicates_dropped,
            "recoded": self.recoded,
        }


def _recode(frame: pd.DataFrame, data: DataSpec) -> tuple[pd.DataFrame, dict[str, dict[str, int]]]:
    counts: dict[str, dict[str, int]] = {}
    frame = frame.copy()
    for column, mapping in data.recode.items():
        series = frame[column]
        counts[column] = {}
        for old, new in mapping.items():
            old_typed = str(old) if pd.api.types.is_string_dtype(series) else old
            hits = series == old_typed
            counts[column][f"{old} -> {new}"] = int(hits.sum())
        text = pd.api.types.is_string_dtype(series)  # a text column stays text: 7 is written '7'
        typed = {(str(o) if text else o): (str(n) if text else n) for o, n in mapping.items()}
        frame[column] = series.replace(typed)
    return frame, counts


def clean(frame: pd.DataFrame, spec: ProjectSpec) -> tuple[pd.DataFrame, CleaningSummary]:
    """Apply the spec's recodings, then its duplicate policy (rows equal in all but the id)."""
    rows_in = len(frame)
    frame, recoded = _recode(frame, spec.data)
    subset = [c for c in frame.columns if c != spec.data.id_column]
    duplicated = frame.duplicated(subset=subset, keep="first")
    count = int(duplicated.sum())
    if count and spec.data.duplicates == "error":
        rows = list(frame.index[duplicated][:5])
        raise DataError(
            f"{count} row(s) repeat an earlier row in every column but the id (e.g. rows {rows}); "
            "set data.duplicates to 'drop' or 'keep' to say how to treat them"
        )
    if spec.data.duplicates == "drop":
        frame = frame.loc[~duplicated]
    else:
        count = 0
    frame = frame.reset_index(drop=True)
    return frame, CleaningSummary(rows_in, len(frame), count, recoded)


def target_vector(frame: pd.DataFrame, spec: ProjectSpec) -> pd.Series:
    """The label as 0/1: 1 where the target equals the spec's positive class."""
    column = frame[spec.target.column]
    positive = spec.target.positive
    if pd.api.types.is_string_dtype(column):
        positive = str(positive)
    y = (column == positive).astype("int64")
    if column.isna().any():
        raise DataError(
            f"target '{spec.target.column}' has {int(column.isna().sum())} missing value(s)"
        )
    if y.nunique() < 2:
        seen = sorted(map(str, column.unique()))[:10]
        raise DataError(
            f"target '{spec.target.column}' must hold both classes; "
            f"positive class {spec.target.positive!r} "
            f"gives one class only (values seen: {seen})"
        )
    return y
