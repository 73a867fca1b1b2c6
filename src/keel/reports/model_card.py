"""The model card: one self-contained HTML page (plus JSON) that a reviewer reads and signs.

The card dict comes from the training flow; this module only presents it. Every optional
key may be missing or ``None`` and renders as an em dash. User-provided text (the spec's
purpose, limitations, column descriptions, reason texts, approval notes) is HTML-escaped
by Jinja's autoescape. The plots are drawn once, from the test rows, and kept beside the
card (``plots.json``), so the page can be rendered again later (with a newer approval
history) from the stored files alone.

The page opens with a decision summary: the lifecycle state, every gate and fairness
bound (failing ones first), the test AUC with its bootstrap interval, the comparison with
the logistic baseline (and with the champion, when the card holds one) and any approval
conditions. Tables longer than :data:`LONG_TABLE_ROWS` rows (and the tuning trials) are
collapsed in ``<details>``.
"""

from __future__ import annotations

import json
import math
import numbers
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, SupportsInt, TypeGuard

import numpy as np
from jinja2 import ChainableUndefined, Environment, PackageLoader, Undefined, select_autoescape

from keel.errors import CardError
from keel.explain.importance import Dependence
from keel.io.files import write_text_atomic
from keel.reports import plots

__all__ = [
    "compare_metrics",
    "draw_plots",
    "read_model_card",
    "render_model_card",
    "write_model_card",
]

HTML_NAME = "model_card.html"
JSON_NAME = "model_card.json"
PLOTS_NAME = "plots.json"
DASH = "—"

# Metrics in the order a reviewer expects them; any others follow alphabetically.
_METRIC_ORDER = (
    "n",
    "positive_rate",
    "auc",
    "gini",
    "ks",
    "average_precision",
    "brier",
    "log_loss",
    "ece",
)
_LOWER_IS_BETTER = frozenset({"brier", "log_loss", "ece"})
_COMPARED = tuple(name for name in _METRIC_ORDER if name not in ("n", "positive_rate"))
_RESULT_ORDER = {"fail": 0, "not evaluated": 1, "pass": 2}
LONG_TABLE_ROWS = 15


def _missing(value: object) -> bool:
    return (
        value is None
        or isinstance(value, Undefined)
        or (isinstance(value, str) and not value.strip())
    )


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


def signed(value: object, digits: int = 4) -> str:
    """Display a difference with its sign: ``+0.0164``, ``-0.0020``."""
    if _missing(value) or isinstance(value, bool) or not isinstance(value, numbers.Real):
        return num(value, digits)
    number = float(value)
    return str(number) if not math.isfinite(number) else f"{number:+.{digits}f}"


def integer(value: object) -> str:
    """Display a count: an integer with thousands separators."""
    if (
        isinstance(value, numbers.Real)
        and isinstance(value, SupportsInt)  # every concrete real is; typeshed's Real lacks __int__
        and not isinstance(value, bool)
        and float(value).is_integer()
    ):
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
    """Trials with a value first, best first for the tuning metric.

    The rest come after, by family and number.
    """
    lower_is_better = str(tuning.get("metric") or "") in _LOWER_IS_BETTER
    trials = [trial for trial in _sequence(tuning.get("trials")) if isinstance(trial, Mapping)]

    def key(trial: Mapping[str, Any]) -> tuple[Any, ...]:
        value = trial.get("value")
        number = float(value) if isinstance(value, numbers.Real) else math.nan
        scored = math.isfinite(number)
        rank = (number if lower_is_better else -number) if scored else 0.0
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


def _change(before: Mapping[str, Any], after: Mapping[str, Any]) -> str | None:
    """'state: validated -> approved; champion: 1 -> 2' for the keys an audit row changed."""
    keys = [key for key in ("state", "champion") if key in before or key in after]
    return (
        "; ".join(f"{key}: {show(before.get(key))} -> {show(after.get(key))}" for key in keys)
        or None
    )


def _utc(time: object) -> str | None:
    """An ISO UTC timestamp as 'YYYY-MM-DD HH:MM:SS' (the audit log keeps the full one)."""
    return str(time)[:19].replace("T", " ") if not _missing(time) else None


def _history_rows(lifecycle: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for entry in _sequence(lifecycle.get("history")):
        entry = _mapping(entry)
        gates = ", ".join(
            f"{gate.get('name')} {gate['status']}"
            for gate in _gate_rows(_sequence(entry.get("gates")))
        )
        rows.append(
            {
                **entry,
                "change": _change(_mapping(entry.get("before")), _mapping(entry.get("after"))),
                "when": _utc(entry.get("time")),
                "gate_summary": gates or None,
            }
        )
    return rows


def _real(value: object) -> TypeGuard[numbers.Real]:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def compare_metrics(this: Mapping[str, Any], other: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per metric both sides have: this value, the other, the difference, which is better.

    The difference is this minus the other.
    """
    rows = []
    names = [name for name in _COMPARED if name in this and name in other]
    for name in names + sorted(set(this) & set(other) - set(_METRIC_ORDER)):
        a, b = this.get(name), other.get(name)
        if not (_real(a) and _real(b)):
            continue
        difference = float(a) - float(b)
        better = (
            "same"
            if difference == 0
            else ("this" if (difference < 0) == (name in _LOWER_IS_BETTER) else "other")
        )
        rows.append(
            {
                "metric": name,
                "this": float(a),
                "other": float(b),
                "difference": difference,
                "better": better,
            }
        )
    return rows


def _interval(value: object) -> dict[str, float] | None:
    """A ``{"value", "low", "high"}`` interval, or None when the card has none."""
    value = _mapping(value)
    return dict(value) if all(_real(value.get(key)) for key in ("value", "low", "high")) else None


def _rule(name: object) -> str:
    text = str(name)
    return ">=" if text.startswith("min_") else "<=" if text.startswith("max_") else ""


def _verdict(gates: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """The one-line gate verdict of the summary and its css class."""
    failed = sum(gate["status"] == "fail" for gate in gates)
    unknown = sum(gate["status"] == "not evaluated" for gate in gates)
    if not gates:
        return "No gates were recorded for this version.", "not-evaluated"
    if failed or unknown:
        parts = [f"{failed} of {len(gates)} gates fail"] if failed else []
        parts += [f"{unknown} not evaluated"] if unknown else []
        return f"{' and '.join(parts)}: approval is blocked.", "fail"
    return ("The one gate passes." if len(gates) == 1 else f"All {len(gates)} gates pass."), "pass"


def _with_differences(
    rows: list[dict[str, Any]], differences: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Comparison rows with the difference's interval; one holding 0 makes neither side better."""
    out = []
    for row in rows:
        interval = _interval(differences.get(row["metric"]))
        unclear = (
            interval is not None
            and interval["low"] <= 0 <= interval["high"]
            and row["better"] != "same"
        )
        out.append({**row, "interval": interval, "better": "unclear" if unclear else row["better"]})
    return out


def _unbounded_fairness(
    card: Mapping[str, Any], gates: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Each protected attribute's fairness measures that no gate bounds.

    As rows for the summary's table.
    """
    bounded = {str(gate.get("name")) for gate in gates}
    rows = []
    for entry in _sequence(card.get("fairness")):
        entry = _mapping(entry)
        for bound, measure in (
            ("min_adverse_impact_ratio", "adverse_impact_ratio"),
            ("max_equal_opportunity_difference", "equal_opportunity_difference"),
        ):
            if f"{bound}[{entry.get('attribute')}]" not in bounded:
                rows.append(
                    {
                        "name": f"{measure}[{entry.get('attribute')}]",
                        "value": entry.get(measure),
                        "threshold": None,
                        "rule": "",
                        "status": "no bound",
                        "css": "no-bound",
                    }
                )
    return rows


def _baseline_view(card: Mapping[str, Any]) -> dict[str, Any] | None:
    """The chosen model against the logistic baseline.

    On the test rows when the card has them, else on validation.
    """
    baseline, tuning = _mapping(card.get("baseline")), _mapping(card.get("tuning"))
    test = _mapping(_mapping(card.get("metrics")).get("test"))
    if _mapping(baseline.get("test")):
        rows = _with_differences(
            compare_metrics(test, _mapping(baseline.get("test"))),
            _mapping(baseline.get("difference")),
        )
        return {
            "source": "test",
            "chosen": bool(baseline.get("chosen")),
            "rows": rows,
            "headline": next((row for row in rows if row["metric"] == "auc"), None),
            "note": baseline.get("note"),
            "params": baseline.get("params"),
        }
    best, chosen = _mapping(tuning.get("best")), tuning.get("chosen_family")
    if "logistic" in best and len(best) > 1 and isinstance(chosen, str) and chosen in best:
        metric = str(tuning.get("metric") or "")
        rows = compare_metrics({metric: best[chosen]}, {metric: best["logistic"]})
        return {
            "source": "validation",
            "chosen": chosen == "logistic",
            "rows": rows,
            "metric": metric,
            "headline": rows[0] if rows else None,
            "note": None,
            "params": None,
        }
    return None


_SELECTION_RULES = {
    "one_se": "the simplest family whose mean is within one standard error of the best mean",
    "best": "the family with the best mean",
}


def _scheme_text(scheme: Mapping[str, Any]) -> str:
    """How candidates were scored, in words: "5 stratified folds", "the validation split"."""
    count, method = scheme.get("folds"), str(scheme.get("method") or "")
    if not _real(count):
        return "not recorded"
    folds = int(float(count))
    if folds <= 1:
        return "the validation split (standard error by bootstrap)"
    kind = {"stratified": "stratified", "time": "time-ordered", "delayed": "weekly (delayed-label)"}
    return f"{folds} {kind.get(method, method)} folds"


def _selection_view(tuning: Mapping[str, Any]) -> dict[str, Any] | None:
    """How the family was chosen: each family's mean and standard error, the rule and the margin.

    None when the card has no selection record (cards written before it was kept).
    """
    selection = _mapping(tuning.get("selection"))
    families = _mapping(selection.get("families"))
    if not families:
        return None
    chosen = selection.get("chosen_family")
    rows = [
        {
            "family": str(name),
            "mean": _mapping(entry).get("mean"),
            "se": _mapping(entry).get("se"),
            "folds": [v for v in _sequence(_mapping(entry).get("folds")) if _real(v)],
            "chosen": name == chosen,
            "best": name == selection.get("best_family"),
        }
        for name, entry in sorted(families.items(), key=lambda item: str(item[0]))
    ]
    rule = str(selection.get("rule") or "")
    metric = str(selection.get("metric") or tuning.get("metric") or "")
    sign = -1.0 if metric in _LOWER_IS_BETTER else 1.0
    means = {row["family"]: float(row["mean"]) for row in rows if _real(row["mean"])}
    others = sorted(
        (name for name in means if name != chosen), key=lambda name: -sign * means[name]
    )
    runner_up = others[0] if others and chosen in means else None
    return {
        "rows": rows,
        "rule": rule,
        "rule_text": _SELECTION_RULES.get(rule, rule or "not recorded"),
        "scheme": _scheme_text(_mapping(selection.get("scheme"))),
        "metric": metric or None,
        "chosen": chosen,
        "best_by_mean": selection.get("best_family"),
        "runner_up": runner_up,
        # in the metric's better direction: positive when the chosen family scored better
        "margin": sign * (means[chosen] - means[runner_up]) if runner_up else None,
        "simpler_within_se": chosen is not None and chosen != selection.get("best_family"),
        "refit": _mapping(selection.get("refit")) or None,
    }


def _conditions(history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every approval in the history that came with conditions, oldest first."""
    rows = []
    for entry in history:
        conditions = _mapping(entry.get("after")).get("conditions")
        if entry.get("action") == "approve" and not _missing(conditions) and conditions != []:
            rows.append(
                {
                    "conditions": conditions,
                    "actor": entry.get("actor"),
                    "role": entry.get("role"),
                    "when": entry.get("when"),
                    "note": entry.get("note"),
                    "version": entry.get("version"),
                }
            )
    return rows


def _summary(
    card: Mapping[str, Any], gates: list[dict[str, Any]], history: list[dict[str, Any]]
) -> dict[str, Any]:
    """What the decision summary at the top of the card shows."""
    ordered = sorted(gates, key=lambda gate: _RESULT_ORDER.get(gate["status"], 1))
    verdict, css = _verdict(gates)
    intervals = _mapping(card.get("intervals"))
    measured = _mapping(intervals.get("metrics"))
    names = [name for name in _COMPARED if name in measured] + sorted(
        set(measured) - set(_COMPARED)
    )
    tuning = _mapping(card.get("tuning"))
    champion = _mapping(card.get("champion"))
    test = _mapping(_mapping(card.get("metrics")).get("test"))
    champion_rows = None
    if champion:
        stored = [_mapping(row) for row in _sequence(card.get("comparison"))]
        champion_rows = _with_differences(
            [dict(row) for row in stored]
            if stored
            else compare_metrics(test, _mapping(champion.get("test"))),
            _mapping(champion.get("difference")),
        )
    return {
        "gates": [{**gate, "rule": _rule(gate.get("name"))} for gate in ordered]
        + _unbounded_fairness(card, gates),
        "verdict": verdict,
        "verdict_css": css,
        "auc": _interval(measured.get("auc")),
        "level": f"{float(intervals['level']) * 100:g}%"
        if _real(intervals.get("level"))
        else "95%",
        "interval_rows": [
            {"name": name, **interval} for name in names if (interval := _interval(measured[name]))
        ],
        "baseline": _baseline_view(card),
        "families": sorted(str(family) for family in _mapping(tuning.get("best"))),
        "selection": _selection_view(tuning),
        "champion": champion or None,
        "champion_rows": champion_rows,
        "champion_auc": next((row for row in champion_rows or [] if row["metric"] == "auc"), None),
        "conditions": _conditions(history),
    }


def _view(card: Mapping[str, Any]) -> dict[str, Any]:
    """Tables and derived values the template would otherwise compute."""
    data = _mapping(card.get("data"))
    method = _mapping(card.get("method"))
    tuning = _mapping(card.get("tuning"))
    tracking_uri = card.get("tracking_uri")
    texts = [_mapping(row) for row in _sequence(_mapping(card.get("reasons")).get("texts"))]
    history = _history_rows(_mapping(card.get("lifecycle")))
    gates = _gate_rows(_sequence(card.get("gates")))
    return {
        "summary": _summary(card, gates, history),
        "long_rows": LONG_TABLE_ROWS,
        "history": history,
        "as_of": _utc(_mapping(card.get("lifecycle")).get("as_of")),
        "texts_not_in_spec": [row.get("feature") for row in texts if row.get("source") != "spec"],
        "metric_rows": _metric_rows(_mapping(card.get("metrics"))),
        "trials": _sorted_trials(tuning),
        "best": sorted(_mapping(tuning.get("best")).items(), key=lambda item: str(item[0])),
        "params": sorted(_mapping(method.get("params")).items(), key=lambda item: str(item[0])),
        "recodings": _recodings(_mapping(data.get("recoded"))),
        "gates": gates,
        "environment": sorted(
            _mapping(card.get("environment")).items(), key=lambda item: str(item[0]).lower()
        ),
        "mlflow_command": (
            f"mlflow ui --backend-store-uri {shlex.quote(str(tracking_uri))}"
            if not _missing(tracking_uri)
            else None
        ),
    }


def draw_plots(
    card: Mapping[str, Any],
    y_test: np.ndarray,
    score_test: np.ndarray,
    dependences: Sequence[Dependence] = (),
) -> dict[str, str]:
    """Every plot of the card as a data URI, by name; same inputs, same strings.

    ``y_test`` holds the 0/1 test labels and ``score_test`` the model's scores for them.
    The importance bars come from the card's ``explanations`` (when it has them) and one
    dependence plot (``dependence/<feature>``) from each of ``dependences``.
    """
    points = [
        p
        for p in _sequence(_mapping(card.get("diagnostics")).get("learning_curve"))
        if isinstance(p, Mapping)
    ]
    drawn = {
        "roc": plots.roc_plot(y_test, score_test),
        "pr": plots.pr_plot(y_test, score_test),
        "calibration": plots.calibration_plot(y_test, score_test),
        "score_distribution": plots.score_distribution_plot(y_test, score_test),
        "gains": plots.gains_plot(y_test, score_test),
        "learning_curve": plots.learning_curve_plot(points),
    }
    ranking = [
        item
        for item in _sequence(_mapping(card.get("explanations")).get("importance"))
        if isinstance(item, Mapping)
    ]
    if ranking:
        drawn["importance"] = plots.importance_plot(
            [str(item["feature"]) for item in ranking],
            [float(item["mean_abs"]) for item in ranking],
        )
    for d in dependences:
        drawn[f"dependence/{d.feature}"] = plots.dependence_plot(
            d.feature, d.values, d.contributions, d.categories
        )
    return drawn


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("keel.reports", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(show=show, num=num, integer=integer, signed=signed)
    return env


def render_model_card(card: Mapping[str, Any], plots: Mapping[str, str]) -> str:
    """Return the model card as one self-contained HTML page, ``plots`` embedded.

    ``plots`` come from :func:`draw_plots`.
    """
    if not isinstance(card, Mapping):
        raise TypeError(f"`card` must be a mapping, but got {type(card).__name__}.")
    template = _environment().get_template("model_card.html.j2")
    return template.render(card=card, view=_view(card), plots=plots)


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def write_model_card(
    card: Mapping[str, Any], plots: Mapping[str, str], out_dir: Path
) -> tuple[Path, Path]:
    """Write ``model_card.html``, ``model_card.json`` and ``plots.json`` into ``out_dir``.

    ``out_dir`` is created; each file is written atomically. Returns ``(html_path, json_path)``.
    The JSON is the card itself; numpy scalars become plain numbers and anything else JSON
    cannot hold becomes its ``str``.
    """
    out_dir = Path(out_dir)
    html = render_model_card(card, plots)
    text = json.dumps(card, indent=2, sort_keys=False, default=_json_default) + "\n"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(
        out_dir / PLOTS_NAME, json.dumps(dict(plots), indent=0, sort_keys=True) + "\n"
    )
    json_path = write_text_atomic(out_dir / JSON_NAME, text)
    html_path = write_text_atomic(out_dir / HTML_NAME, html)
    return html_path, json_path


def read_model_card(out_dir: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The card and its plots as :func:`write_model_card` stored them in ``out_dir``."""
    out_dir = Path(out_dir)
    missing = [name for name in (JSON_NAME, PLOTS_NAME) if not (out_dir / name).is_file()]
    if missing:
        raise CardError(
            f"no stored model card to render in {out_dir}: {', '.join(missing)} missing. "
            "A version trained with `keel train` has no card, and cards written before plots "
            "were stored beside them cannot be re-rendered; `keel run` writes a complete one."
        )
    card = json.loads((out_dir / JSON_NAME).read_text(encoding="utf-8"))
    stored = json.loads((out_dir / PLOTS_NAME).read_text(encoding="utf-8"))
    return card, stored
