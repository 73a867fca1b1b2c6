"""The monitoring report: one self-contained HTML page with plots over time, plus JSON.

The report dict is :meth:`keel.monitoring.monitor.MonitorReport.to_dict`; this module only
presents it. Every optional value may be missing or ``None`` and renders as an em dash; a
window without drift (too few rows) or realized metrics (too few labels) says so instead of
showing a zero. Same report, same bytes.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from keel.io.files import write_text_atomic
from keel.reports.model_card import _environment, _json_default, _mapping, _sequence, show
from keel.reports.monitoring_plots import monitoring_plots

__all__ = ["render_monitoring_report", "write_monitoring_report"]

HTML_NAME = "monitoring.html"
JSON_NAME = "monitoring.json"
_LEVELS = {"ok": 0, "warn": 1, "alert": 2}


def _pvalue(value: object) -> str:
    """A p-value in two significant digits (``1.2e-18``), so tiny ones do not read as zero."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(float(value))
    ):
        return show(value)
    return f"{float(value):.2g}"


def _window_row(window: Mapping[str, Any]) -> dict[str, Any]:
    drift = _mapping(window.get("drift"))
    features = [_mapping(f) for f in _sequence(drift.get("features"))]
    return {
        "window": window.get("window"),
        "start": window.get("start"),
        "end": window.get("end"),
        "rows": window.get("rows"),
        "labelled": window.get("labelled"),
        "versions": window.get("versions"),
        "estimated": _mapping(window.get("estimated")),
        "realized": _mapping(window.get("realized")),
        "has_realized": bool(window.get("realized")),
        "level": drift.get("level") if drift else None,
        "drifted": sum(bool(f.get("drifted")) for f in features) if drift else None,
        "features": len(features),
        "alerts": len(_sequence(window.get("alerts"))),
    }


def _drift_detail(window: Mapping[str, Any]) -> dict[str, Any] | None:
    drift = _mapping(window.get("drift"))
    if not drift:
        return None
    features = [_mapping(f) for f in _sequence(drift.get("features"))]
    drifted = sorted(
        (f for f in features if f.get("drifted")),
        key=lambda f: (
            -_LEVELS.get(str(f.get("level")), 0),
            -float(f.get("psi") or 0.0),
            str(f.get("name")),
        ),
    )
    return {
        "window": window.get("window"),
        "level": drift.get("level"),
        "n_rows": drift.get("n_rows"),
        "n_tests": drift.get("n_tests"),
        "alpha": _mapping(drift.get("thresholds")).get("alpha"),
        "features": len(features),
        "drifted": drifted,
    }


def _view(report: Mapping[str, Any]) -> dict[str, Any]:
    """Counts and tables the template would otherwise compute."""
    windows = [_mapping(w) for w in _sequence(report.get("windows"))]
    alerts = [_mapping(a) for a in _sequence(report.get("alerts"))]
    severities = [str(a.get("severity")) for a in alerts]
    details = [d for d in map(_drift_detail, windows) if d is not None]
    return {
        "alerts": alerts,
        "n_alert": severities.count("alert"),
        "n_warn": severities.count("warn"),
        "windows": [_window_row(w) for w in windows],
        "first": windows[0].get("start") if windows else None,
        "last": windows[-1].get("end") if windows else None,
        "versions": sorted({v for w in windows for v in _sequence(w.get("versions"))}, key=str),
        "drift": details,
        "unjudged": [w.get("window") for w in windows if not w.get("drift")],
    }


def render_monitoring_report(report: Mapping[str, Any]) -> str:
    """Return the monitoring report as one self-contained HTML page, its plots embedded."""
    if not isinstance(report, Mapping):
        raise TypeError(
            "`report` must be a mapping (MonitorReport.to_dict()), "
            f"but got {type(report).__name__}."
        )
    env = _environment()
    env.filters["pvalue"] = _pvalue
    template = env.get_template("monitoring.html.j2")
    return template.render(report=report, view=_view(report), plots=monitoring_plots(report))


def write_monitoring_report(report: Mapping[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write ``monitoring.html`` and ``monitoring.json`` into ``out_dir``, each atomically.

    ``out_dir`` is created. Returns ``(html_path, json_path)``; the JSON is the report itself.
    """
    html = render_monitoring_report(report)
    text = json.dumps(report, indent=2, default=_json_default) + "\n"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = write_text_atomic(out_dir / JSON_NAME, text)
    html_path = write_text_atomic(out_dir / HTML_NAME, html)
    return html_path, json_path
