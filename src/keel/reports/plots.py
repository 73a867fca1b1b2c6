"""Report plots as ``data:image/png;base64,...`` strings, drawn with matplotlib's Figure API.

No pyplot: each function builds its own :class:`~matplotlib.figure.Figure`, so nothing
touches matplotlib's global state. PNG bytes carry no software version or date, so the
same inputs always give the same string (the model card relies on this).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

__all__ = [
    "calibration_plot",
    "dependence_plot",
    "gains_plot",
    "importance_plot",
    "learning_curve_plot",
    "pr_plot",
    "roc_plot",
    "score_distribution_plot",
]

FIGSIZE = (5.0, 3.5)
DPI = 90
_POSITIVE = "#c0392b"
_NEGATIVE = "#2e6da4"
_REFERENCE = "#888888"
_FEW_VALUES = 20


def _binary_inputs(y: object, score: object) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(y as int 0/1, score as float)``; refuse anything a curve cannot be drawn from."""
    y_arr = np.asarray(y).ravel()
    score_arr = np.asarray(score, dtype=float).ravel()
    if y_arr.shape != score_arr.shape:
        raise ValueError(
            f"`y` and `score` must have the same length, but got {y_arr.size} and {score_arr.size}."
        )
    if y_arr.size == 0:
        raise ValueError("`y` and `score` must not be empty.")
    labels = set(np.unique(y_arr).tolist())
    if not labels <= {0, 1}:
        raise ValueError(
            f"`y` must hold only 0 and 1 (or booleans), but got labels {sorted(labels, key=str)}."
        )
    if not np.all(np.isfinite(score_arr)):
        bad = int(np.sum(~np.isfinite(score_arr)))
        raise ValueError(f"`score` must be finite, but {bad} values are NaN or infinite.")
    return y_arr.astype(int), score_arr


def _figure(nrows: int = 1, height_ratios: Sequence[float] | None = None) -> tuple[Figure, list]:
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    gridspec_kw = {"height_ratios": list(height_ratios)} if height_ratios else None
    axes = fig.subplots(nrows, 1, sharex=nrows > 1, gridspec_kw=gridspec_kw, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def _to_data_uri(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _note(ax: Axes, text: str) -> None:
    """Write ``text`` in the middle of an empty axes (for curves that are not defined)."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color=_REFERENCE)
    ax.set_xticks([])
    ax.set_yticks([])


def _one_class(y: np.ndarray) -> bool:
    return np.unique(y).size < 2


def roc_plot(y: object, score: object) -> str:
    """ROC curve with its AUC in the legend and the chance diagonal."""
    y_arr, score_arr = _binary_inputs(y, score)
    fig, (ax,) = _figure()
    ax.set_title("ROC curve")
    if _one_class(y_arr):
        _note(ax, "Not defined: only one class in the data")
        return _to_data_uri(fig)
    fpr, tpr, _ = roc_curve(y_arr, score_arr)
    ax.plot(fpr, tpr, color=_NEGATIVE, label=f"model (AUC = {auc(fpr, tpr):.4f})")
    ax.plot([0, 1], [0, 1], color=_REFERENCE, linestyle="--", linewidth=1, label="chance")
    ax.set(xlabel="False positive rate", ylabel="True positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    return _to_data_uri(fig)


def pr_plot(y: object, score: object) -> str:
    """Precision-recall curve with average precision, against the positive-rate baseline."""
    y_arr, score_arr = _binary_inputs(y, score)
    fig, (ax,) = _figure()
    ax.set_title("Precision-recall curve")
    if _one_class(y_arr):
        _note(ax, "Not defined: only one class in the data")
        return _to_data_uri(fig)
    precision, recall, _ = precision_recall_curve(y_arr, score_arr)
    ap = average_precision_score(y_arr, score_arr)
    base = float(y_arr.mean())
    ax.step(recall, precision, where="post", color=_NEGATIVE, label=f"model (AP = {ap:.4f})")
    ax.axhline(
        base, color=_REFERENCE, linestyle="--", linewidth=1, label=f"positive rate ({base:.4f})"
    )
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="upper right")
    return _to_data_uri(fig)


def calibration_plot(y: object, score: object, bins: int = 10) -> str:
    """Reliability diagram on ``bins`` equal-width bins of [0, 1], with a count histogram below."""
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"`bins` must be a positive integer, but got {bins=!r}.")
    y_arr, score_arr = _binary_inputs(y, score)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin i holds scores in [edges[i], edges[i+1]); the last bin also holds 1.0.
    index = np.clip(np.digitize(np.clip(score_arr, 0.0, 1.0), edges[1:-1]), 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    filled = counts > 0
    mean_score = np.bincount(index, weights=score_arr, minlength=bins)[filled] / counts[filled]
    observed = np.bincount(index, weights=y_arr, minlength=bins)[filled] / counts[filled]

    fig, (top, bottom) = _figure(nrows=2, height_ratios=(3, 1))
    top.set_title("Calibration (reliability diagram)")
    top.plot(
        [0, 1], [0, 1], color=_REFERENCE, linestyle="--", linewidth=1, label="perfectly calibrated"
    )
    top.plot(mean_score, observed, marker="o", color=_NEGATIVE, label="model")
    top.set(ylabel="Observed positive rate", xlim=(0, 1), ylim=(-0.02, 1.04))
    top.legend(loc="upper left")
    bottom.bar(
        edges[:-1],
        counts,
        width=np.diff(edges),
        align="edge",
        color=_NEGATIVE,
        alpha=0.6,
        edgecolor="white",
    )
    bottom.set(xlabel="Mean predicted score", ylabel="Count")
    return _to_data_uri(fig)


def score_distribution_plot(y: object, score: object) -> str:
    """Density histograms of the score for each class, on shared bins."""
    y_arr, score_arr = _binary_inputs(y, score)
    low, high = float(score_arr.min()), float(score_arr.max())
    if low == high:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, 31)
    fig, (ax,) = _figure()
    ax.set_title("Score distribution by class")
    for label, name, color in ((0, "negative (0)", _NEGATIVE), (1, "positive (1)", _POSITIVE)):
        values = score_arr[y_arr == label]
        if values.size:
            ax.hist(
                values,
                bins=edges,
                density=True,
                alpha=0.5,
                color=color,
                label=f"{name}, n = {values.size}",
            )
    ax.set(xlabel="Score", ylabel="Density")
    ax.legend(loc="upper center")
    return _to_data_uri(fig)


def gains_plot(y: object, score: object) -> str:
    """Cumulative gains by decile of score (highest first) against random selection."""
    y_arr, score_arr = _binary_inputs(y, score)
    order = np.argsort(-score_arr, kind="stable")
    groups = np.array_split(y_arr[order], min(10, y_arr.size))
    population = np.concatenate([[0.0], np.cumsum([g.size for g in groups]) / y_arr.size])
    fig, (ax,) = _figure()
    ax.set_title("Cumulative gains by decile")
    total = int(y_arr.sum())
    if total == 0:
        _note(ax, "Not defined: no positives in the data")
        return _to_data_uri(fig)
    captured = np.concatenate([[0.0], np.cumsum([g.sum() for g in groups]) / total])
    ax.plot(population, captured, marker="o", color=_NEGATIVE, label="model")
    ax.plot([0, 1], [0, 1], color=_REFERENCE, linestyle="--", linewidth=1, label="random")
    ax.set(
        xlabel="Share of population (highest scores first)",
        ylabel="Share of positives captured",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    ax.legend(loc="lower right")
    return _to_data_uri(fig)


def learning_curve_plot(points: Sequence[Mapping[str, Any]]) -> str:
    """Train and validation metric against training-set size.

    Each point holds ``train_size``, ``train_metric``, ``validation_metric`` and ``metric``
    (the metric's name, used for the axis label). No points gives a figure saying so.
    """
    fig, (ax,) = _figure()
    ax.set_title("Learning curve")
    if not points:
        _note(ax, "No learning curve recorded")
        return _to_data_uri(fig)
    required = ("train_size", "train_metric", "validation_metric")
    for position, point in enumerate(points):
        missing = [key for key in required if key not in point]
        if missing:
            raise ValueError(
                f"Learning-curve point {position} must have keys {list(required)}, "
                f"but lacks {missing}."
            )
    ordered = sorted(points, key=lambda point: point["train_size"])
    sizes = [point["train_size"] for point in ordered]
    metric = str(ordered[0].get("metric") or "metric")
    ax.plot(
        sizes,
        [point["train_metric"] for point in ordered],
        marker="o",
        color=_POSITIVE,
        label="train",
    )
    ax.plot(
        sizes,
        [point["validation_metric"] for point in ordered],
        marker="o",
        color=_NEGATIVE,
        label="validation",
    )
    ax.set(xlabel="Training rows", ylabel=metric)
    ax.legend(loc="best")
    return _to_data_uri(fig)


def importance_plot(features: Sequence[str], mean_abs: Sequence[float], top: int = 15) -> str:
    """Horizontal bars of the ``top`` largest mean |contribution| values, largest at the top."""
    if len(features) != len(mean_abs):
        raise ValueError(
            f"`features` and `mean_abs` must have the same length, but got {len(features)} and "
            f"{len(mean_abs)}."
        )
    order = np.argsort(-np.asarray(mean_abs, dtype=float), kind="stable")[:top]
    fig = Figure(
        figsize=(FIGSIZE[0] * 1.6, 0.9 + 0.28 * max(len(order), 1)), dpi=DPI, layout="constrained"
    )
    ax = fig.subplots()
    ax.set_title(f"Global importance (top {len(order)} of {len(features)} features)")
    if not len(order):
        _note(ax, "No features to show")
        return _to_data_uri(fig)
    ax.barh(
        [str(features[j]) for j in order][::-1],
        [float(mean_abs[j]) for j in order][::-1],
        color=_NEGATIVE,
    )
    ax.set(xlabel="Mean |contribution| to the log-odds over test rows")
    return _to_data_uri(fig)


def dependence_plot(
    feature: str, values: object, contributions: object, categories: Sequence[str] | None = None
) -> str:
    """Contribution against value, one point per row; red pushes towards the positive class.

    The positive class is the adverse one. A categorical feature is drawn as jittered columns,
    one per category. Missing values are left out and counted in the title; the axis of a
    numeric feature with more than ``_FEW_VALUES`` distinct values spans its 1st to 99th
    percentile, so outliers cannot squash the rest.
    """
    x = np.asarray(values, dtype=float).ravel()
    y = np.asarray(contributions, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(
            "`values` and `contributions` must have the same length, "
            f"but got {x.size} and {y.size}."
        )
    present = np.isfinite(x)
    missing = int(x.size - present.sum())
    x, y = x[present], y[present]
    fig, (ax,) = _figure()
    ax.set_title(f"{feature}" + (f" ({missing} missing not shown)" if missing else ""))
    if not x.size:
        _note(ax, "No rows with a value")
        return _to_data_uri(fig)
    if categories is not None:
        x = x + np.random.default_rng(0).uniform(-0.3, 0.3, x.size)
        ax.set_xticks(range(len(categories)), [str(c) for c in categories], rotation=30, ha="right")
    elif np.unique(x).size > _FEW_VALUES:
        low, high = np.quantile(x, [0.01, 0.99])
        if high > low:
            pad = 0.02 * (high - low)
            ax.set_xlim(low - pad, high + pad)
    colors = np.where(y > 0, _POSITIVE, _NEGATIVE)
    ax.scatter(x, y, s=4, c=colors, alpha=0.35, linewidths=0, rasterized=True)
    ax.axhline(0.0, color=_REFERENCE, linestyle="--", linewidth=1)
    ax.set(xlabel=f"{feature} value", ylabel="Contribution (log-odds)")
    return _to_data_uri(fig)
