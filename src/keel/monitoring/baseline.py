"""The drift baseline: a small summary of the training data, stored as plain JSON with the model.

Numeric feature: interior cut points at the training quantiles ``1/bins, ..., (bins-1)/bins``
(``method="inverted_cdf"``, so every cut is a training value), deduplicated and without cuts
at or above the training maximum, so heavily tied or discrete features get fewer bins and
no bin is empty in training. Bins are right-closed and the outer two are open-ended:
``(-inf, c0], (c0, c1], ..., (ck, +inf)``, so new extremes land in the outer bins. Beside the
bin counts it keeps the training ECDF on at most ``max_points`` support points for the KS
test: every distinct value when there are that few (the KS statistic is then exact), else
the quantiles at levels ``j / max_points``; ``ks_resolution`` records the largest share of
training rows between two stored points, a bound on the error of the stored ECDF.

Categorical feature: counts of the ``max_categories`` most frequent categories (compared
as ``str(value)``, whole numbers written as integers so the codes 1 and 1.0 agree); the
rest of training is pooled in ``other``. A new batch's category not stored is "unseen", so
when training had more categories than stored, the unseen rate includes training's rare tail
and its baseline value is ``other / n``.

Size bound, whatever the training size: a numeric feature holds at most
``2 * bins + 2 * max_points`` numbers (default 1,020; about 11 kB of JSON), a categorical
feature ``max_categories`` names and counts plus two counts. Missing values (NaN, None,
NaT) are counted apart from the bins and categories.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from keel.errors import DataError, SpecError, did_you_mean
from keel.monitoring.stats import KSResult, ks_from_ecdf

FORMAT = "keel-drift-baseline/1"


@dataclass(frozen=True)
class NumericBaseline:
    """Training summary of one numeric feature (see the module docstring for the binning)."""

    name: str
    n: int  # non-missing training rows
    missing: int  # missing training rows
    cuts: tuple[float, ...]
    bin_counts: tuple[int, ...]  # len(cuts) + 1
    ecdf_values: tuple[float, ...]  # sorted support points
    ecdf_counts: tuple[int, ...]  # training rows <= each support point
    ks_resolution: float  # 0 <= true ECDF - stored step ECDF < ks_resolution (0: exact)

    kind: ClassVar[str] = "numeric"

    @property
    def proportions(self) -> np.ndarray:
        """Expected share of the non-missing training rows in each bin."""
        return np.asarray(self.bin_counts, dtype=np.float64) / max(self.n, 1)

    @property
    def missing_rate(self) -> float:
        """Share of training rows where the feature was missing."""
        return self.missing / max(self.n + self.missing, 1)

    def bin_index(self, values: np.ndarray) -> np.ndarray:
        """Bin of each non-missing value (right-closed bins, open-ended outer bins)."""
        return np.searchsorted(np.asarray(self.cuts, dtype=np.float64), values, side="left")

    def ks(self, values: ArrayLike) -> KSResult:
        """Two-sample KS test of non-missing ``values`` against the training ECDF.

        The p-value is conservative.
        """
        return ks_from_ecdf(
            np.asarray(self.ecdf_values, dtype=np.float64),
            np.asarray(self.ecdf_counts),
            self.n,
            np.asarray(values, dtype=np.float64),
            self.ks_resolution,
        )


@dataclass(frozen=True)
class CategoricalBaseline:
    """Training summary of one categorical feature: stored category counts and the rest."""

    name: str
    n: int  # non-missing training rows
    missing: int
    categories: tuple[str, ...]  # most frequent first
    counts: tuple[int, ...]
    other: int  # training rows in categories beyond max_categories

    kind: ClassVar[str] = "categorical"

    @property
    def proportions(self) -> np.ndarray:
        """Expected share of the non-missing training rows per stored category, then ``other``."""
        return np.asarray((*self.counts, self.other), dtype=np.float64) / max(self.n, 1)

    @property
    def missing_rate(self) -> float:
        """Share of training rows where the feature was missing."""
        return self.missing / max(self.n + self.missing, 1)


FeatureBaseline = NumericBaseline | CategoricalBaseline


@dataclass(frozen=True)
class Baseline:
    """Per-feature training summaries; ``to_dict``/``from_dict`` give plain JSON."""

    n_rows: int
    features: tuple[FeatureBaseline, ...]

    def feature(self, name: str) -> FeatureBaseline:
        """Return the summary of feature ``name``; DataError naming the known ones otherwise."""
        for feature in self.features:
            if feature.name == name:
                return feature
        names = [f.name for f in self.features]
        raise DataError(
            f"the baseline has no feature {name!r}; it has {names}.{did_you_mean(name, names)}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (ints, finite floats, strings, lists)."""
        return {
            "format": FORMAT,
            "n_rows": self.n_rows,
            "features": [{"kind": f.kind, **_fields(f)} for f in self.features],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Baseline:
        """Rebuild a baseline from ``to_dict`` output; DataError when it is not one."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            got = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise DataError(f"not a drift baseline: expected format {FORMAT!r}, got {got!r}")
        try:
            features = tuple(_feature_from_dict(item) for item in data["features"])
            return cls(n_rows=int(data["n_rows"]), features=features)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"malformed drift baseline ({FORMAT}): {exc!r}") from exc


def _fields(feature: FeatureBaseline) -> dict[str, Any]:
    return {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in vars(feature).items()
    }


def _feature_from_dict(item: Mapping[str, Any]) -> FeatureBaseline:
    kind = item["kind"]
    if kind == "numeric":
        numeric = NumericBaseline(
            name=str(item["name"]),
            n=int(item["n"]),
            missing=int(item["missing"]),
            cuts=tuple(float(v) for v in item["cuts"]),
            bin_counts=tuple(int(v) for v in item["bin_counts"]),
            ecdf_values=tuple(float(v) for v in item["ecdf_values"]),
            ecdf_counts=tuple(int(v) for v in item["ecdf_counts"]),
            ks_resolution=float(item["ks_resolution"]),
        )
        if len(numeric.bin_counts) != len(numeric.cuts) + 1 or len(numeric.ecdf_values) != len(
            numeric.ecdf_counts
        ):
            raise ValueError(
                f"feature {numeric.name!r}: bin_counts needs len(cuts) + 1 entries and "
                "ecdf_values and ecdf_counts the same length"
            )
        return numeric
    if kind == "categorical":
        categorical = CategoricalBaseline(
            name=str(item["name"]),
            n=int(item["n"]),
            missing=int(item["missing"]),
            categories=tuple(str(v) for v in item["categories"]),
            counts=tuple(int(v) for v in item["counts"]),
            other=int(item["other"]),
        )
        if len(categorical.categories) != len(categorical.counts):
            raise ValueError(
                f"feature {categorical.name!r}: categories and counts need the same length"
            )
        return categorical
    raise ValueError(f"feature kind must be 'numeric' or 'categorical', got {kind!r}")


def as_frame(data: pd.DataFrame | Mapping[str, ArrayLike], what: str) -> pd.DataFrame:
    """Return ``data`` as a DataFrame (a mapping of equal-length columns is accepted)."""
    if isinstance(data, pd.DataFrame):
        return data
    try:
        return pd.DataFrame(dict(data))
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"{what} must be a DataFrame or a mapping of equal-length columns: {exc}"
        ) from exc


def is_categorical(series: pd.Series) -> bool:
    """True for columns summarised by category: not numeric, or boolean."""
    return pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series)


def category_labels(series: pd.Series) -> pd.Series:
    """The non-missing values as category labels: ``str(value)``, whole numbers as integers.

    So 1.0 becomes '1'.
    """
    present = series[series.notna()]
    if pd.api.types.is_bool_dtype(present) or not pd.api.types.is_numeric_dtype(present):
        return present.astype(str)
    # Integer codes read with missing values become floats: keep '1' the same label as 1.0.
    values = present.to_numpy(dtype=np.float64)
    text = present.astype(str).to_numpy(dtype=object)
    whole = np.isfinite(values) & (np.abs(values) < 2**53) & (values == np.trunc(values))
    text[whole] = values[whole].astype(np.int64).astype(str)
    return pd.Series(text, index=present.index, dtype=object)


def _check_int(name: str, value: int, lowest: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lowest:
        raise SpecError(f"{name} must be an integer >= {lowest}, but got {value!r}")


def build_baseline(
    data: pd.DataFrame | Mapping[str, ArrayLike],
    *,
    columns: Sequence[str] | None = None,
    categorical: Sequence[str] = (),
    bins: int = 10,
    max_points: int = 500,
    max_categories: int = 100,
) -> Baseline:
    """Summarise the training data; ``categorical`` makes columns (say integer codes) categories."""
    _check_int("bins", bins, 2)
    _check_int("max_points", max_points, 2)
    _check_int("max_categories", max_categories, 1)
    frame = as_frame(data, "the training data")
    names = list(frame.columns) if columns is None else list(columns)
    unknown = [name for name in [*names, *categorical] if name not in frame.columns]
    if unknown:
        raise DataError(
            f"columns {unknown} are not in the training data; it has {list(frame.columns)}."
            f"{did_you_mean(str(unknown[0]), map(str, frame.columns))}"
        )
    if len(frame) == 0:
        raise DataError("the training data has no rows; a drift baseline needs at least one")
    features: list[FeatureBaseline] = []
    for name in names:
        series = frame[name]
        if name in categorical or is_categorical(series):
            features.append(_categorical(str(name), series, max_categories))
        else:
            features.append(_numeric(str(name), series, bins, max_points))
    return Baseline(n_rows=len(frame), features=tuple(features))


def numeric_values(series: pd.Series, name: str) -> np.ndarray:
    """The column as float64 with NaN for missing; DataError when it is not numeric."""
    try:
        return pd.to_numeric(series, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise DataError(f"column {name!r} must be numeric (missing as NaN or None): {exc}") from exc


def _quantiles(x: np.ndarray, parts: int) -> np.ndarray:
    """Distinct ``inverted_cdf`` quantiles of sorted ``x`` at levels ``1/parts, ..., 1``.

    The indices are computed in integer arithmetic.
    """
    index = (np.arange(1, parts + 1) * x.size + parts - 1) // parts - 1  # ceil(j * n / parts) - 1
    return _distinct(x[index])


def _distinct(x: np.ndarray) -> np.ndarray:
    """The distinct values of a sorted array."""
    return x[np.concatenate([[True], x[1:] != x[:-1]])] if x.size else x


def _numeric(name: str, series: pd.Series, bins: int, max_points: int) -> NumericBaseline:
    values = numeric_values(series, name)
    missing = np.isnan(values)
    x = np.sort(values[~missing])
    if np.isinf(x).any():
        raise DataError(
            f"training column {name!r} holds infinite values; a baseline accepts finite numbers "
            "(and NaN for missing)"
        )
    if x.size == 0:
        return NumericBaseline(name, 0, int(missing.sum()), (), (0,), (), (), 0.0)
    cuts = _quantiles(x, bins)
    cuts = cuts[cuts < x[-1]]
    bin_counts = np.bincount(np.searchsorted(cuts, x, side="left"), minlength=cuts.size + 1)
    grid = _distinct(x)
    if grid.size > max_points:
        grid = _quantiles(x, max_points)
    at_or_below = np.searchsorted(x, grid, side="right")
    below = np.searchsorted(x, grid, side="left")
    # Training rows strictly between two stored points (or below the first) are what the step
    # ECDF misses.
    gaps = below - np.concatenate([[0], at_or_below[:-1]])
    return NumericBaseline(
        name=name,
        n=int(x.size),
        missing=int(missing.sum()),
        cuts=tuple(cuts.tolist()),
        bin_counts=tuple(bin_counts.tolist()),
        ecdf_values=tuple(grid.tolist()),
        ecdf_counts=tuple(at_or_below.tolist()),
        ks_resolution=float(gaps.max() / x.size),
    )


def _categorical(name: str, series: pd.Series, max_categories: int) -> CategoricalBaseline:
    missing = series.isna()
    counts = category_labels(series).value_counts(sort=False)
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    kept = ordered[:max_categories]
    return CategoricalBaseline(
        name=name,
        n=int((~missing).sum()),
        missing=int(missing.sum()),
        categories=tuple(str(c) for c, _ in kept),
        counts=tuple(int(k) for _, k in kept),
        other=int(sum(k for _, k in ordered[max_categories:])),
    )
