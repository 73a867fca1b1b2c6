"""Monitoring plots over time: one point or column per window, oldest first, each a PNG data URI.

The input is the ``windows`` list of :meth:`keel.monitoring.monitor.MonitorReport.to_dict`.
A window without a value (no drift judged for too few rows, no realized metrics for too few
labels) is a gap in a line or a grey cell, never a zero. Drawn with the same Figure helpers
as :mod:`keel.reports.plots`, so the same report gives the same bytes.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from keel.reports.model_card import _mapping
from keel.reports.plots import (
    _NEGATIVE,
    _POSITIVE,
    _REFERENCE,
    DPI,
    FIGSIZE,
    _figure,
    _note,
    _to_data_uri,
)

__all__ = [
    "SCORE",
    "drift_plot",
    "fairness_plot",
    "monitoring_plots",
    "performance_plot",
    "series",
    "volume_plot",
]

SCORE = "probability"  # the score's own drift row (keel.monitoring.reference.SCORE)
_WIDE = (FIGSIZE[0] * 1.6, FIGSIZE[1])
_MAX_TICKS = 12
_MAX_ANNOTATED = 16  # windows beyond this many get no PSI numbers in the heatmap cells
_ALERT = "#b3261e"


def _number(value: object) -> float:
    """A finite float, or NaN for anything else (None, missing, not a number)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return math.nan
    number = float(value)
    return number if math.isfinite(number) else math.nan


def series(windows: Sequence[Mapping[str, Any]], section: str, metric: str) -> np.ndarray:
    """``windows[i][section][metric]`` as floats, NaN where a window has no such value.

    A NaN is drawn as a gap.
    """
    return np.array(
        [_number(_mapping(_mapping(w).get(section)).get(metric)) for w in windows], dtype=float
    )


def _tick_label(window: Mapping[str, Any]) -> str:
    """A week's label is 'start/end': its start date is enough on an axis."""
    return str(window.get("window", "")).split("/")[0]


def _time_axis(
    ax: Any, windows: Sequence[Mapping[str, Any]], xlabel: str = "Window (start)"
) -> None:
    """Windows at 0..n-1, at most ``_MAX_TICKS`` labels, slanted so long dates fit."""
    positions = np.arange(len(windows))
    step = max(1, math.ceil(len(windows) / _MAX_TICKS))
    ax.set_xticks(
        positions[::step],
        [_tick_label(windows[i]) for i in positions[::step]],
        rotation=30,
        ha="right",
        fontsize=8,
    )
    ax.set_xlim(-0.6, len(windows) - 0.4)
    ax.set_xlabel(xlabel)


def _line(ax: Any, values: np.ndarray, **style: Any) -> None:
    """A line with a marker on every point; NaN breaks it, a point between two gaps still shows."""
    if np.isfinite(values).any():
        ax.plot(np.arange(values.size), values, marker="o", markersize=4, **style)


def _empty(title: str, text: str, size: tuple[float, float] = FIGSIZE) -> str:
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    ax = fig.subplots()
    ax.set_title(title)
    _note(ax, text)
    return _to_data_uri(fig)


def _alert_threshold(
    alerts: Sequence[Mapping[str, Any]], kinds: set[str], subject: str | None = None
) -> float | None:
    """The threshold an alert of one of ``kinds`` was raised against (the same for every window)."""
    for alert in alerts:
        alert = _mapping(alert)
        if alert.get("kind") in kinds and (subject is None or alert.get("subject") == subject):
            value = _number(alert.get("threshold"))
            if math.isfinite(value):
                return value
    return None


def performance_plot(
    windows: Sequence[Mapping[str, Any]],
    reference_auc: float | None = None,
    floor: float | None = None,
) -> str:
    """Estimated (label-free, dashed) and realized (solid) AUC per window.

    With the test AUC and the alert floor.
    """
    title = "AUC over time"
    if not windows:
        return _empty(title, "No windows to show")
    fig, (ax,) = _figure()
    fig.set_size_inches(*_WIDE)
    ax.set_title(title)
    _line(
        ax,
        series(windows, "estimated", "auc"),
        color=_NEGATIVE,
        linestyle="--",
        label="estimated (no labels)",
    )
    _line(ax, series(windows, "realized", "auc"), color=_NEGATIVE, label="realized (labelled rows)")
    reference = _number(reference_auc)
    if math.isfinite(reference):
        ax.axhline(
            reference,
            color=_REFERENCE,
            linestyle="--",
            linewidth=1,
            label=f"test AUC ({reference:.4f})",
        )
    bound = _number(floor)
    if math.isfinite(bound):
        ax.axhline(
            bound, color=_ALERT, linestyle=":", linewidth=1.5, label=f"alert floor ({bound:.4f})"
        )
    _time_axis(ax, windows)
    ax.set_ylabel("AUC")
    ax.legend(loc="best", fontsize=8)
    return _to_data_uri(fig)


def _drift_matrix(
    windows: Sequence[Mapping[str, Any]], top: int
) -> tuple[list[str], np.ndarray, np.ndarray, int]:
    """Feature names, PSI and level codes, and the number of inputs seen.

    The names are the score first, then the ``top`` inputs by largest PSI. Level codes: -1
    window not judged, 0 ok, 1 warn, 2 alert.
    """
    largest: dict[str, float] = {}
    for window in windows:
        for feature in _mapping(window.get("drift")).get("features") or ():
            name, value = str(feature.get("name")), _number(feature.get("psi"))
            largest[name] = max(
                largest.get(name, -math.inf), value if math.isfinite(value) else -math.inf
            )
    inputs = sorted((n for n in largest if n != SCORE), key=lambda n: (-largest[n], n))
    names = ([SCORE] if SCORE in largest else []) + inputs[:top]
    psi = np.full((len(names), len(windows)), np.nan)
    level = np.full((len(names), len(windows)), -1)
    codes = {"ok": 0, "warn": 1, "alert": 2}
    row = {name: i for i, name in enumerate(names)}
    for j, window in enumerate(windows):
        for feature in _mapping(window.get("drift")).get("features") or ():
            i = row.get(str(feature.get("name")))
            if i is not None:
                psi[i, j] = _number(feature.get("psi"))
                level[i, j] = codes.get(str(feature.get("level")), 0)
    return names, psi, level, len(inputs)


def drift_plot(windows: Sequence[Mapping[str, Any]], top: int = 12) -> str:
    """Heatmap of PSI per feature and window for the score and the ``top`` inputs by largest PSI.

    Drifted cells are outlined (solid: alert, dashed: warn); windows not judged (too few
    rows) are grey. The score's row comes first, in bold; the colour bar marks the rule's
    ``psi_alert``.
    """
    title = "Drift: PSI per feature and window"
    names, psi, level, n_inputs = _drift_matrix(windows, top)
    if not names:
        return _empty(title, "No window had enough rows to judge drift", _WIDE)
    fig = Figure(figsize=(_WIDE[0], 1.5 + 0.32 * len(names)), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    shown = len(names) - (names[0] == SCORE)
    which = (
        f"all {n_inputs} inputs"
        if shown == n_inputs
        else f"the top {shown} of {n_inputs} inputs by largest PSI"
    )
    ax.set_title(f"{title} ({'the score and ' if names[0] == SCORE else ''}{which})", fontsize=10)
    cmap = colormaps["YlOrRd"].with_extremes(bad="#e6e6e6")
    finite = psi[np.isfinite(psi)]
    psi_alert = next(
        (
            value
            for w in windows
            if math.isfinite(
                value := _number(
                    _mapping(_mapping(w.get("drift")).get("thresholds")).get("psi_alert")
                )
            )
        ),
        math.nan,
    )
    vmax = max(
        0.3,
        2 * psi_alert if math.isfinite(psi_alert) else 0.0,
        float(finite.max()) if finite.size else 0.0,
    )
    image = ax.imshow(
        np.ma.masked_invalid(psi),
        cmap=cmap,
        vmin=0.0,
        vmax=vmax,
        aspect="auto",
        interpolation="nearest",
    )
    bar = fig.colorbar(image, ax=ax, label="PSI", pad=0.01)
    if math.isfinite(psi_alert):
        bar.ax.axhline(psi_alert, color="black", linewidth=1.5)
    for i, j in zip(*np.nonzero(level >= 1), strict=True):
        solid = level[i, j] == 2
        ax.add_patch(
            Rectangle(
                (j - 0.5, i - 0.5),
                1,
                1,
                fill=False,
                edgecolor="black" if solid else "#333333",
                linewidth=2.2 if solid else 1.4,
                linestyle="-" if solid else "--",
            )
        )
    if psi.shape[1] <= _MAX_ANNOTATED:
        for i, j in np.ndindex(psi.shape):
            text = f"{psi[i, j]:.2f}" if level[i, j] >= 0 and np.isfinite(psi[i, j]) else "n/a"
            dark = level[i, j] >= 0 and psi[i, j] > 0.6 * vmax
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=7,
                color="white" if dark else "#333333",
            )
    ax.set_yticks(
        range(len(names)), [f"{n} (score)" if n == SCORE else n for n in names], fontsize=8
    )
    for label in ax.get_yticklabels():
        if label.get_text() == f"{SCORE} (score)":
            label.set_fontweight("bold")
    _time_axis(ax, windows)
    fig.legend(
        handles=[
            Patch(
                fill=False, edgecolor="black", linewidth=2.2, label="alert: drifted, large change"
            ),
            Patch(
                fill=False,
                edgecolor="#333333",
                linewidth=1.4,
                linestyle="--",
                label="warn: drifted, small change",
            ),
            Patch(facecolor="#e6e6e6", label="not judged (too few rows)"),
        ],
        loc="outside lower center",
        ncols=3,
        fontsize=8,
        frameon=False,
    )
    return _to_data_uri(fig)


def volume_plot(windows: Sequence[Mapping[str, Any]], reference_rate: float | None = None) -> str:
    """Rows and labelled rows per window (bars).

    Below, the mean score against the realized positive rate.
    """
    title = "Volume, labels and positive rate"
    if not windows:
        return _empty(title, "No windows to show")
    fig, (top, bottom) = _figure(nrows=2, height_ratios=(1, 1))
    fig.set_size_inches(_WIDE[0], FIGSIZE[1] * 1.3)
    top.set_title(title)
    x = np.arange(len(windows))
    rows = np.array([_number(_mapping(w).get("rows")) for w in windows])
    labelled = np.array([_number(_mapping(w).get("labelled")) for w in windows])
    top.bar(x, np.nan_to_num(rows), width=0.8, color=_NEGATIVE, alpha=0.3, label="rows")
    top.bar(x, np.nan_to_num(labelled), width=0.45, color=_NEGATIVE, label="labelled by the run")
    top.set_ylabel("Rows")
    top.set_ylim(0, 1.35 * max(1.0, float(np.nanmax(rows, initial=0.0))))
    top.legend(loc="upper left", ncols=2, fontsize=8)
    _line(
        bottom,
        series(windows, "estimated", "positive_rate"),
        color=_POSITIVE,
        linestyle="--",
        label="mean score (estimated positive rate)",
    )
    _line(
        bottom,
        series(windows, "realized", "positive_rate"),
        color=_POSITIVE,
        label="realized positive rate",
    )
    reference = _number(reference_rate)
    if math.isfinite(reference):
        bottom.axhline(
            reference,
            color=_REFERENCE,
            linestyle="--",
            linewidth=1,
            label=f"test ({reference:.4f})",
        )
    bottom.set_ylabel("Positive rate")
    bottom.legend(loc="best", fontsize=8)
    _time_axis(bottom, windows)
    return _to_data_uri(fig)


def fairness_plot(windows: Sequence[Mapping[str, Any]], bound: float | None = None) -> str | None:
    """Adverse impact ratio per protected attribute and window, against ``bound``.

    None when no window has fairness.
    """
    attributes: dict[str, np.ndarray] = {}
    for j, window in enumerate(windows):
        for entry in _mapping(window).get("fairness") or ():
            name = str(_mapping(entry).get("attribute"))
            values = attributes.setdefault(name, np.full(len(windows), np.nan))
            values[j] = _number(_mapping(entry).get("adverse_impact_ratio"))
    if not attributes:
        return None
    fig, (ax,) = _figure()
    fig.set_size_inches(*_WIDE)
    ax.set_title("Fairness: adverse impact ratio (lowest group approval rate / highest)")
    for name in sorted(attributes):
        _line(ax, attributes[name], label=name)
    line = _number(bound)
    if math.isfinite(line):
        ax.axhline(
            line, color=_ALERT, linestyle=":", linewidth=1.5, label=f"alert bound ({line:g})"
        )
    else:
        ax.axhline(
            0.8, color=_REFERENCE, linestyle="--", linewidth=1, label="four-fifths rule (0.8)"
        )
    seen = np.concatenate(list(attributes.values()))
    lowest = float(seen[np.isfinite(seen)].min()) if np.isfinite(seen).any() else 1.0
    ax.set_ylim(min(0.5, lowest - 0.05), 1.02)
    ax.set_ylabel("Adverse impact ratio")
    ax.legend(loc="lower left", fontsize=8)
    _time_axis(ax, windows)
    return _to_data_uri(fig)


def monitoring_plots(report: Mapping[str, Any], top: int = 12) -> dict[str, str]:
    """Every plot of a monitoring report by name.

    The names: ``performance``, ``drift``, ``volume``, and ``fairness`` when any.
    """
    windows = [_mapping(w) for w in report.get("windows") or ()]
    alerts = [_mapping(a) for a in report.get("alerts") or ()]
    reference = _mapping(report.get("reference"))
    drawn = {
        "performance": performance_plot(
            windows,
            reference.get("auc"),
            _alert_threshold(alerts, {"estimate", "performance"}, "auc"),
        ),
        "drift": drift_plot(windows, top),
        "volume": volume_plot(windows, reference.get("positive_rate")),
    }
    fairness = fairness_plot(windows, _alert_threshold(alerts, {"fairness"}))
    if fairness is not None:
        drawn["fairness"] = fairness
    return drawn
