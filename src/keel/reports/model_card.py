"""The model card: one self-contained HTML page (plus the card as JSON) that a reviewer reads and signs.

The card dict comes from the training flow; this module only presents it. Every optional
key may be missing or ``None`` and renders as an em dash. User-provided text (the spec's
purpose, limitations, column descriptions) is HTML-escaped by Jinja's autoescape.
"""

from __future__ import annotations

import json
import math
import numbers
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import ChainableUndefined, Environment, PackageLoader, Undefined, select_autoescape

from keel.io.files import write_text_atomic
from keel.reports import plots

__all__ = ["render_model_card", "write_model_card"]

HTML_NAME = "model_card.html"
JSON_NAME = "model_card.json"
DASH = "—"

# Metrics in the order a reviewer expects them; any others follow alphabetically.
_METRIC_ORDER = ("n", "positive_rate", "auc", "gini", "ks", "average_precision", "brier", "log_loss", "ece")
_LOWER_IS_BETTER = frozenset({"brier", "log_loss", "ece"})


def _missing(value: object) -> bool:
    return value is None or isinstance(value, Undefined) or (isinstance(value, str) and not value.strip())


def show(value: object) -> str:
    """Display any card value as text: missing values become an em dash."""
    if _missing(value):
        return DASH
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        return str(number) if not math.isfinite(number) else f"{number:.6g}"
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    if isinstance(value, Sequence) and not isinstance(value, str):
        return ", ".join(show(item) for item in value) if value else DASH
    return str(value)


def num(value: object, digits: int = 4) -> str:
    """Display a number with ``digits`` decimals (integers with thousands separators)."""
    if _missing(value):
        return DASH
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        return show(value)
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    number = float(value)
    return str(number) if not math.isfinite(number) else f"{number:.{digits}f}"


def integer(value: object) -> str:
    """Display a count: an integer with thousands separators."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer():
        return f"{int(value):,}"
    return num(value)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _sequence(value: object) -> Sequence[Any]:
    return value if isinstance(value, Sequence) and not isinstance(value, str) else []


def _metric_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    splits = ("train", "validation", "test")
    by_split = {split: _mapping(metrics.get(split)) for split in splits}
    names = {name for values in by_split.values() for name in values}
    ordered = [name for name in _METRIC_ORDER if name in names] + sorted(names - set(_METRIC_ORDER))
    rows = []
    for name in ordered:
        cells = [by_split[split].get(name) for split in splits]
        text = [integer(cell) if name == "n" else num(cell) for cell in cells]
        rows.append({"name": name, "cells": text})
    return rows


def _sorted_trials(tuning: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Trials with a value first, best first for the tuning metric; the rest after, by family and number."""
    lower_is_better = str(tuning.get("metric") or "") in _LOWER_IS_BETTER
    trials = [trial for trial in _sequence(tuning.get("trials")) if isinstance(trial, Mapping)]

    def key(trial: Mapping[str, Any]) -> tuple[Any, ...]:
        value = trial.get("value")
        scored = isinstance(value, numbers.Real) and math.isfinite(float(value))
        rank = (float(value) if lower_is_better else -float(value)) if scored else 0.0
        return (not scored, rank, str(trial.get("family")), show(trial.get("number")))

    return sorted(trials, key=key)


def _gate_rows(gates: Sequence[Any]) -> list[dict[str, Any]]:
    rows = []
    for gate in gates:
        gate = _mapping(gate)
        passed = gate.get("passed")
        status = "not evaluated" if passed is None else ("pass" if passed else "fail")
        rows.append({**gate, "status": status, "css": status.replace(" ", "-")})
    return rows


def _recodings(recoded: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (str(column), str(source), show(target))
        for column, mapping in recoded.items()
        for source, target in _mapping(mapping).items()
    ]


def _view(card: Mapping[str, Any]) -> dict[str, Any]:
    """Tables and derived values the template would otherwise compute."""
    data = _mapping(card.get("data"))
    method = _mapping(card.get("method"))
    tuning = _mapping(card.get("tuning"))
    tracking_uri = card.get("tracking_uri")
    return {
        "metric_rows": _metric_rows(_mapping(card.get("metrics"))),
        "trials": _sorted_trials(tuning),
        "best": sorted(_mapping(tuning.get("best")).items(), key=lambda item: str(item[0])),
        "params": sorted(_mapping(method.get("params")).items(), key=lambda item: str(item[0])),
        "recodings": _recodings(_mapping(data.get("recoded"))),
        "gates": _gate_rows(_sequence(card.get("gates"))),
        "environment": sorted(_mapping(card.get("environment")).items(), key=lambda item: str(item[0]).lower()),
        "mlflow_command": (
            f"mlflow ui --backend-store-uri {shlex.quote(str(tracking_uri))}" if not _missing(tracking_uri) else None
        ),
    }


def _plots(card: Mapping[str, Any], y_test: np.ndarray, score_test: np.ndarray) -> dict[str, str]:
    points = [p for p in _sequence(_mapping(card.get("diagnostics")).get("learning_curve")) if isinstance(p, Mapping)]
    return {
        "roc": plots.roc_plot(y_test, score_test),
        "pr": plots.pr_plot(y_test, score_test),
        "calibration": plots.calibration_plot(y_test, score_test),
        "score_distribution": plots.score_distribution_plot(y_test, score_test),
        "gains": plots.gains_plot(y_test, score_test),
        "learning_curve": plots.learning_curve_plot(points),
    }


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("keel.reports", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(show=show, num=num, integer=integer)
    return env


def render_model_card(card: Mapping[str, Any], y_test: np.ndarray, score_test: np.ndarray) -> str:
    """Return the model card as one self-contained HTML page (plots embedded as data URIs).

    ``y_test`` holds the 0/1 test labels and ``score_test`` the model's scores for them;
    they feed the plots only, the tables come from ``card``. Same inputs, same bytes.
    """
    if not isinstance(card, Mapping):
        raise TypeError(f"`card` must be a mapping, but got {type(card).__name__}.")
    template = _environment().get_template("model_card.html.j2")
    return template.render(card=card, view=_view(card), plots=_plots(card, y_test, score_test))


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def write_model_card(
    card: Mapping[str, Any], y_test: np.ndarray, score_test: np.ndarray, out_dir: Path
) -> tuple[Path, Path]:
    """Write ``model_card.html`` and ``model_card.json`` into ``out_dir`` (created), each atomically.

    Returns ``(html_path, json_path)``. The JSON is the card itself; numpy scalars become
    plain numbers and anything else JSON cannot hold becomes its ``str``.
    """
    out_dir = Path(out_dir)
    html = render_model_card(card, y_test, score_test)
    text = json.dumps(card, indent=2, sort_keys=False, default=_json_default) + "\n"
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path = write_text_atomic(out_dir / HTML_NAME, html)
    json_path = write_text_atomic(out_dir / JSON_NAME, text)
    return html_path, json_path
