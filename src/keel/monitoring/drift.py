"""Drift of a new batch against the training baseline, per feature, and the rule that flags it.

Each feature gets PSI (over its bins or categories plus a missing bin), its missing rate now
and in training, and significance tests against training:

- numeric: the two-sample KS test of the non-missing values;
- categorical: a chi-square homogeneity test of the mix of the stored categories (among the
  rows in one of them), and Fisher's exact test of the unseen share among non-missing rows
  (against training's ``other`` share, 0 when every category was stored);
- both: Fisher's exact test of the missing rate.

The rule. A feature *drifts* when one of its tests rejects at ``alpha / m``, ``m`` being the
number of tests over the whole batch (Bonferroni). By the union bound the chance that an
unchanged batch flags any feature is at most ``alpha`` whatever the correlation between
features; the default ``alpha = 0.01`` means about four false alarms a year for a model
monitored daily (0.05 would mean eighteen). A drifting feature is an ``alert`` when the
change is also large (PSI >= 0.2, missing rate up or down by >= 0.05, or unseen share up by
>= 0.05), else a ``warn``. An insignificant change is ``ok`` however large its PSI. With
very large batches small real changes become significant: they show as ``warn``.

The bound assumes valid tests and holds over the draw of both the training set and the
batch; the KS p-value is asymptotic (conservative for discrete features and for a coarsened
ECDF), the chi-square pools sparse cells, Fisher's test is exact. Against one fixed baseline
the rate over many windows scatters around the bound, as the training sample's own noise is
shared by every window; the tests measure both.

Why PSI alone is not the trigger: on an unchanged batch PSI is a sampling artefact whose
mean is about ``(k - 1) * (1/n + 1/N)`` for ``k`` bins, ``n`` batch and ``N`` training rows
(``n * N / (n + N) * PSI`` is close to chi-square with ``k - 1`` degrees of freedom). With
10 bins that is about 0.1 at n = 100: measured against a 20,000-row baseline, one normal
feature reaches the usual "PSI >= 0.1" in 40% of unchanged 100-row batches, and one of eight
features in 94% of them. Yet a real 0.3 sd mean shift gives PSI of only about 0.085 however
large the batch (its KS statistic is 0.12). The tests adapt to the batch size; PSI then
grades the size of a change they found real.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from keel.errors import DataError, SpecError, did_you_mean
from keel.monitoring.baseline import (
    Baseline,
    CategoricalBaseline,
    NumericBaseline,
    as_frame,
    category_labels,
    numeric_values,
)
from keel.monitoring.stats import (
    DEFAULT_EPSILON,
    homogeneity_pvalue,
    psi,
    rate_change_pvalue,
)

Level = Literal["ok", "warn", "alert"]
_ORDER: dict[str, int] = {"ok": 0, "warn": 1, "alert": 2}


@dataclass(frozen=True)
class DriftThresholds:
    """The drift rule's knobs (see the module docstring for why these defaults)."""

    alpha: float = 0.01  # family-wise false-alarm rate per batch
    psi_alert: float = 0.2
    missing_alert: float = 0.05  # absolute change of the missing rate
    unseen_alert: float = 0.05  # absolute rise of the unseen-category share
    epsilon: float = DEFAULT_EPSILON  # PSI smoothing

    def __post_init__(self) -> None:
        for name in ("alpha", "psi_alert", "missing_alert", "unseen_alert", "epsilon"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 < value < float("inf")
            ):
                raise SpecError(
                    f"drift threshold {name} must be a positive number, but got {value!r}"
                )
        if not self.alpha < 1 or not self.epsilon < 1:
            raise SpecError(
                f"alpha and epsilon must be below 1, but got alpha={self.alpha}, "
                f"epsilon={self.epsilon}"
            )


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one feature in a batch.

    The p-values are raw; ``adjusted_pvalue`` is Bonferroni's.
    """

    name: str
    kind: str
    n: int  # batch rows
    psi: float
    missing_rate: float
    baseline_missing_rate: float
    ks_statistic: float | None  # numeric only; None when one side has no values
    ks_pvalue: float | None
    missing_pvalue: float  # Fisher's exact test of the missing rate
    chi2_pvalue: float | None  # categorical only: the mix of the stored categories among them
    unseen_rate: (
        float | None
    )  # categorical only: share of non-missing values not stored in the baseline
    unseen_pvalue: float | None  # categorical only: Fisher's exact test of the unseen rate
    baseline_unseen_rate: float | None
    adjusted_pvalue: float
    drifted: bool
    level: Level

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)


@dataclass(frozen=True)
class DriftReport:
    """Drift of every baseline feature in one batch, with the rule's settings."""

    n_rows: int
    n_tests: int
    thresholds: DriftThresholds
    features: tuple[FeatureDrift, ...]

    @property
    def drifted(self) -> bool:
        """True when any feature drifted (the event whose false-alarm rate is at most alpha)."""
        return any(f.drifted for f in self.features)

    @property
    def level(self) -> Level:
        """The worst feature level."""
        return max((f.level for f in self.features), key=_ORDER.__getitem__, default="ok")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "n_rows": self.n_rows,
            "n_tests": self.n_tests,
            "thresholds": asdict(self.thresholds),
            "drifted": self.drifted,
            "level": self.level,
            "features": [f.to_dict() for f in self.features],
        }


def detect_drift(
    baseline: Baseline,
    batch: pd.DataFrame | Mapping[str, ArrayLike],
    thresholds: DriftThresholds | None = None,
) -> DriftReport:
    """Compare a batch with the baseline, feature by feature, and apply the drift rule."""
    rule = thresholds or DriftThresholds()
    frame = as_frame(batch, "the batch")
    if len(frame) == 0:
        raise DataError("the batch has no rows; drift needs at least one")
    missing = [f.name for f in baseline.features if f.name not in frame.columns]
    if missing:
        raise DataError(
            f"the batch lacks baseline columns {missing}; it has {list(frame.columns)}."
            f"{did_you_mean(missing[0], map(str, frame.columns))}"
        )
    raw = [
        _numeric(f, frame[f.name], rule)
        if isinstance(f, NumericBaseline)
        else _categorical(f, frame[f.name], rule)
        for f in baseline.features
    ]
    n_tests = sum(len(pvalues) for _, pvalues, _ in raw)
    features = []
    for fields, pvalues, large in raw:
        adjusted = min(1.0, n_tests * min(pvalues)) if pvalues else 1.0
        drifted = adjusted < rule.alpha
        level: Level = ("alert" if large else "warn") if drifted else "ok"
        features.append(
            FeatureDrift(**fields, adjusted_pvalue=adjusted, drifted=drifted, level=level)
        )
    return DriftReport(
        n_rows=len(frame), n_tests=n_tests, thresholds=rule, features=tuple(features)
    )


def _numeric(
    base: NumericBaseline, series: pd.Series, rule: DriftThresholds
) -> tuple[dict[str, Any], list[float], bool]:
    values = numeric_values(series, base.name)
    is_missing = np.isnan(values)
    x = values[~is_missing]
    n_missing = int(is_missing.sum())
    bins = np.bincount(base.bin_index(x), minlength=len(base.bin_counts))
    value = psi([*base.bin_counts, base.missing], [*bins, n_missing], rule.epsilon)
    ks_statistic = ks_pvalue = None
    if x.size and base.n:
        ks = base.ks(x)
        ks_statistic, ks_pvalue = ks.statistic, ks.pvalue
    missing_pvalue = rate_change_pvalue(base.missing, base.n + base.missing, n_missing, values.size)
    missing_rate = n_missing / values.size
    fields = {
        "name": base.name,
        "kind": base.kind,
        "n": int(values.size),
        "psi": value,
        "missing_rate": missing_rate,
        "baseline_missing_rate": base.missing_rate,
        "ks_statistic": ks_statistic,
        "ks_pvalue": ks_pvalue,
        "missing_pvalue": missing_pvalue,
        "chi2_pvalue": None,
        "unseen_rate": None,
        "unseen_pvalue": None,
        "baseline_unseen_rate": None,
    }
    large = value >= rule.psi_alert or abs(missing_rate - base.missing_rate) >= rule.missing_alert
    return fields, [1.0 if ks_pvalue is None else ks_pvalue, missing_pvalue], large


def _categorical(
    base: CategoricalBaseline, series: pd.Series, rule: DriftThresholds
) -> tuple[dict[str, Any], list[float], bool]:
    labels = category_labels(series)
    present = labels.value_counts()
    stored = [int(present.get(category, 0)) for category in base.categories]
    n_present = len(labels)
    unseen = n_present - sum(stored)
    n_missing = len(series) - n_present
    reference = [*base.counts, base.other, base.missing]
    actual = [*stored, unseen, n_missing]
    value = psi(reference, actual, rule.epsilon)
    chi2_pvalue = homogeneity_pvalue(base.counts, stored) if base.counts else 1.0
    unseen_pvalue = rate_change_pvalue(base.other, base.n, unseen, n_present)
    missing_pvalue = rate_change_pvalue(base.missing, base.n + base.missing, n_missing, len(series))
    missing_rate = n_missing / len(series)
    unseen_rate = unseen / n_present if n_present else 0.0
    baseline_unseen_rate = base.other / base.n if base.n else 0.0
    fields = {
        "name": base.name,
        "kind": base.kind,
        "n": len(series),
        "psi": value,
        "missing_rate": missing_rate,
        "baseline_missing_rate": base.missing_rate,
        "ks_statistic": None,
        "ks_pvalue": None,
        "missing_pvalue": missing_pvalue,
        "chi2_pvalue": chi2_pvalue,
        "unseen_rate": unseen_rate,
        "unseen_pvalue": unseen_pvalue,
        "baseline_unseen_rate": baseline_unseen_rate,
    }
    large = (
        value >= rule.psi_alert
        or abs(missing_rate - base.missing_rate) >= rule.missing_alert
        or unseen_rate - baseline_unseen_rate >= rule.unseen_alert
    )
    return fields, [chi2_pvalue, unseen_pvalue, missing_pvalue], large
