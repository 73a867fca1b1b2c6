"""One monitoring pass: events cut into time windows, each judged for drift, performance, fairness.

Per window: drift of every model input and of the score against the baseline stored with
the model (:mod:`keel.monitoring.drift`); the label-free performance estimate (CBPE) from
the probabilities; the realized performance of the rows whose label is known at ``as_of``
(arrived by then, or ``label_delay`` old when labels carry no time), so a run never reads
a label before it could have been known; and fairness by protected group where the events
hold the attributes. Alerts come from the spec's thresholds. Only windows that had closed
by ``as_of`` are judged; the one still open, and a window with fewer than ``min_rows`` rows
(or labelled rows, for realized metrics), is shown, never judged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from keel.errors import DataError
from keel.evaluation.fairness import fairness_report
from keel.io.times import as_of_time
from keel.models.artifact import KeelModel
from keel.monitoring.baseline import Baseline
from keel.monitoring.drift import DriftReport, DriftThresholds, detect_drift
from keel.monitoring.estimate import (
    Performance,
    estimate_performance,
    realized_performance,
)
from keel.monitoring.reference import SCORE
from keel.spec import FairnessSpec, MonitoringSpec, duration_us

_PERIOD = {"day": "D", "week": "W-SUN", "month": "M"}  # weeks run Monday to Sunday
Severity = Literal["warn", "alert"]


@dataclass(frozen=True)
class Alert:
    """One finding: what (``kind``), where (``window``, ``subject``), how bad, and its numbers."""

    window: str
    kind: Literal["drift", "performance", "estimate", "fairness"]
    severity: Severity
    subject: str
    message: str
    value: float | None = None
    threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)


@dataclass(frozen=True)
class WindowResult:
    """What one window showed."""

    window: str
    start: str
    end: str
    complete: bool  # the window had closed by the as-of time; only complete windows are judged
    rows: int
    labelled: int
    versions: list[int]
    drift: DriftReport | None
    estimated: Performance
    realized: Performance | None
    fairness: list[dict[str, Any]] | None
    alerts: list[Alert] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "window": self.window,
            "start": self.start,
            "end": self.end,
            "complete": self.complete,
            "rows": self.rows,
            "labelled": self.labelled,
            "versions": self.versions,
            "drift": self.drift.to_dict() if self.drift else None,
            "estimated": self.estimated.to_dict(),
            "realized": self.realized.to_dict() if self.realized else None,
            "fairness": self.fairness,
            "alerts": [a.to_dict() for a in self.alerts],
        }


@dataclass(frozen=True)
class MonitorReport:
    """A whole monitoring pass."""

    model: str
    as_of: str
    window: str
    reference: dict[str, Any]
    windows: list[WindowResult]

    @property
    def alerts(self) -> list[Alert]:
        """Every alert of every window, oldest window first."""
        return [a for w in self.windows for a in w.alerts]

    def judged_through(self) -> pd.Timestamp | None:
        """When the newest judged window (closed, with rows) closes: how far this pass has seen.

        None when no window was judged.
        """
        closes = [_closes(w) for w in self.windows if w.complete and w.rows]
        return max(closes) if closes else None

    def alerts_since(self, since: pd.Timestamp | None) -> list[Alert]:
        """The alerts of windows that closed after ``since``: what is news.

        ``since`` is the previous run's as-of time; None gives every alert.
        """
        if since is None:
            return self.alerts
        return [a for w in self.windows if _closes(w) > since for a in w.alerts]

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "model": self.model,
            "as_of": self.as_of,
            "window": self.window,
            "reference": self.reference,
            "windows": [w.to_dict() for w in self.windows],
            "alerts": [a.to_dict() for a in self.alerts],
        }


def monitoring_baseline(model: KeelModel) -> tuple[Baseline, dict[str, Any]]:
    """The drift baseline and the test-set reference performance stored with a model at training."""
    stored = model.metadata.get("monitoring")
    if not stored:
        raise DataError(
            "this model version holds no monitoring baseline (trained before Keel kept one); "
            "retrain it with this Keel to monitor it"
        )
    return Baseline.from_dict(stored["baseline"]), {
        **stored["reference"],
        "estimated_auc": stored["reference_estimate"]["auc"],
    }


def monitor(
    events: pd.DataFrame,
    model: KeelModel,
    settings: MonitoringSpec,
    *,
    name: str,
    as_of: pd.Timestamp | None = None,
    protected: Sequence[str] = (),
    fairness: FairnessSpec | None = None,
    partial: bool = False,
    on_window: Callable[[int, int], None] | None = None,
) -> MonitorReport:
    """Judge every window of ``events`` that closed by ``as_of`` (see the module doc).

    ``as_of`` defaults to the newest event. The window still open at ``as_of`` is shown but
    judged only with ``partial``: part of a week differs from a whole one (its weekdays, say).
    ``on_window(done, total)`` is called after each window (for a progress bar).
    """
    if events.empty:
        raise DataError("there are no scored events to monitor")
    baseline, reference = monitoring_baseline(model)
    as_of = as_of_time(as_of) if as_of is not None else events["time"].max()
    events = events[events["time"] <= as_of]
    known = _label_known(events, as_of, duration_us(settings.label_delay))
    rule = DriftThresholds(
        alpha=settings.alpha,
        psi_alert=settings.psi_alert,
        missing_alert=settings.missing_alert,
        unseen_alert=settings.unseen_alert,
    )
    periods = events["time"].dt.to_period(_PERIOD[settings.window])
    results = []
    windows = events.groupby(periods, sort=True)
    for period, rows in windows:
        labelled = rows[known.loc[rows.index]]
        complete = period.end_time <= as_of
        results.append(
            _window(
                str(period),
                period,
                complete,
                complete or partial,
                rows,
                labelled,
                baseline,
                reference,
                model,
                settings,
                rule,
                [c for c in protected if c in rows.columns],
                fairness or FairnessSpec(),
            )
        )
        if on_window is not None:
            on_window(len(results), windows.ngroups)
    return MonitorReport(name, str(as_of), settings.window, reference, results)


def _closes(window: WindowResult) -> pd.Timestamp:
    """When a window closes: the day after its last day."""
    return pd.Timestamp(window.end) + pd.Timedelta(days=1)


def _label_known(events: pd.DataFrame, as_of: pd.Timestamp, delay_us: int) -> pd.Series:
    """A label counts when it is there and was known at ``as_of``.

    Known by its arrival time, else once the label delay has passed.
    """
    arrived = events["label_time"]
    by_delay = events["time"] + pd.Timedelta(microseconds=delay_us) <= as_of
    return events["label"].notna() & np.where(arrived.notna(), arrived <= as_of, by_delay)


def _window(
    label: str,
    period: pd.Period,
    complete: bool,
    judge: bool,
    rows: pd.DataFrame,
    labelled: pd.DataFrame,
    baseline: Baseline,
    reference: dict[str, Any],
    model: KeelModel,
    settings: MonitoringSpec,
    rule: DriftThresholds,
    protected: list[str],
    fairness: FairnessSpec,
) -> WindowResult:
    judged = judge and len(rows) >= settings.min_rows
    p = rows[SCORE].to_numpy(dtype="float64")
    drift = detect_drift(baseline, rows, rule) if judged else None
    estimated = estimate_performance(p, threshold=model.threshold)
    realized, groups = None, None
    if judge and len(labelled) >= settings.min_rows:
        y, q = labelled["label"].to_numpy(), labelled[SCORE].to_numpy(dtype="float64")
        realized = realized_performance(y, q, threshold=model.threshold)
        if protected:
            groups = fairness_report(
                labelled[protected].reset_index(drop=True),
                y.astype(int),
                q,
                threshold=model.threshold,
                fairness=fairness,
            )
    alerts = _alerts(
        label, drift, estimated if judged else None, realized, groups, reference, settings, fairness
    )
    return WindowResult(
        label,
        str(period.start_time.date()),
        str(period.end_time.date()),
        complete,
        len(rows),
        len(labelled),
        sorted(int(v) for v in rows["version"].unique()),
        drift,
        estimated,
        realized,
        groups,
        alerts,
    )


def _alerts(
    window: str,
    drift: DriftReport | None,
    estimated: Performance | None,
    realized: Performance | None,
    groups: list[dict[str, Any]] | None,
    reference: dict[str, Any],
    settings: MonitoringSpec,
    fairness: FairnessSpec,
) -> list[Alert]:
    alerts = []
    for feature in drift.features if drift else ():
        if feature.level != "ok":
            alerts.append(
                Alert(
                    window,
                    "drift",
                    feature.level,
                    feature.name,
                    f"{feature.name} drifted (PSI {feature.psi:.3f}, "
                    f"adjusted p {feature.adjusted_pvalue:.2g})",
                    feature.psi,
                    settings.psi_alert,
                )
            )
    floors = {
        "performance": _auc_floor(reference, settings),
        "estimate": _estimate_floor(reference, settings),
    }
    judged: tuple[tuple[Literal["estimate", "performance"], Performance | None], ...] = (
        ("estimate", estimated),
        ("performance", realized),
    )
    for kind, performance in judged:
        auc, floor = (performance.auc if performance else None), floors[kind]
        if auc is not None and floor is not None and auc < floor:
            what = "estimated AUC (no labels)" if kind == "estimate" else "realized AUC"
            alerts.append(
                Alert(
                    window,
                    kind,
                    "alert",
                    "auc",
                    f"{what} {auc:.4f} is below {floor:.4f}",
                    auc,
                    floor,
                )
            )
    for attribute in groups or ():
        ratio, least = attribute["adverse_impact_ratio"], fairness.min_adverse_impact_ratio
        if ratio is not None and least is not None and ratio < least:
            alerts.append(
                Alert(
                    window,
                    "fairness",
                    "alert",
                    attribute["attribute"],
                    f"adverse impact ratio for {attribute['attribute']} is {ratio:.3f}, "
                    f"below {least}",
                    ratio,
                    least,
                )
            )
    return alerts


def _estimate_floor(reference: dict[str, Any], settings: MonitoringSpec) -> float | None:
    """The lowest acceptable label-free estimate: the test rows' estimate less ``max_auc_drop``.

    Compared with its own value on the test rows, not with the realized test AUC, so a model
    whose probabilities are off by a constant calibration error is not flagged for that alone.
    """
    estimated = reference.get("estimated_auc")
    return (
        None
        if settings.max_auc_drop is None or estimated is None
        else estimated - settings.max_auc_drop
    )


def _auc_floor(reference: dict[str, Any], settings: MonitoringSpec) -> float | None:
    """The lowest acceptable AUC: the higher of ``min_auc`` and test AUC less ``max_auc_drop``."""
    floors = [settings.min_auc] if settings.min_auc is not None else []
    if settings.max_auc_drop is not None and reference.get("auc") is not None:
        floors.append(reference["auc"] - settings.max_auc_drop)
    return max(floors) if floors else None
