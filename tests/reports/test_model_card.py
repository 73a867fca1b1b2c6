"""Model card: all sections render, plots are embedded, text is escaped, output is deterministic."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from keel.errors import CardError
from keel.explain.importance import Dependence
from keel.reports import plots
from keel.reports.model_card import (
    compare_metrics,
    draw_plots,
    read_model_card,
    render_model_card,
    write_model_card,
)

SECTION_HEADINGS = (
    "Decision summary",
    "Purpose and intended use",
    "Data",
    "Method",
    "Tuning",
    "Performance",
    "Bias and variance",
    "Global explanations",
    "Reason codes",
    "Gates",
    "Approval and audit history",
    "Limitations",
    "Reproducibility",
    "Sign-off",
)


@pytest.fixture(scope="module")
def test_set() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    y = rng.binomial(1, 0.22, size=2_000)
    score = np.clip(0.22 + 0.25 * (y - 0.22) + rng.normal(0, 0.15, size=y.size), 0.001, 0.999)
    return y, score


def _card() -> dict:
    return {
        "title": "Credit default, 12-month probability of default",
        "model_name": "credit_default",
        "version": 3,
        "created": "2024-05-02T10:15:00+00:00",
        "run_id": "4f1c2a9e0b7d4e21a3c5b6d7e8f90123",
        "tracking_uri": "file:///srv/keel/ml runs",
        "code_version": "git:bbb0ecf",
        "purpose": "Estimate the probability that a client defaults next month.",
        "intended_use": "Pre-screening of credit-line increases; a human decides.",
        "owner": "Retail credit risk",
        "limitations": [
            "Trained on Taiwanese clients from 2005 only.",
            "Not validated for new-to-bank clients.",
        ],
        "data": {
            "source": "data/default_of_credit_card_clients.parquet",
            "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "format": "parquet",
            "rows_read": 30_000,
            "rows_used": 29_965,
            "duplicates_dropped": 35,
            "recoded": {
                "EDUCATION": {"0 -> 4": 14, "5 -> 4": 280, "6 -> 4": 51},
                "MARRIAGE": {"0 -> 3": 54},
            },
            "positive_class": 1,
            "positive_rate": 0.2212,
            "contract": [
                {
                    "column": "LIMIT_BAL",
                    "dtype": "float64",
                    "nullable": False,
                    "unique": False,
                    "min": 10_000,
                    "max": 1_000_000,
                    "allowed": None,
                    "description": "Credit line (NT$).",
                },
                {
                    "column": "SEX",
                    "dtype": "int64",
                    "nullable": False,
                    "unique": False,
                    "min": None,
                    "max": None,
                    "allowed": [1, 2],
                    "description": "1 = male, 2 = female.",
                },
            ],
            "split": {
                "method": "stratified random",
                "train": 17_979,
                "validation": 5_993,
                "test": 5_993,
            },
        },
        "method": {
            "family": "lightgbm",
            "features": ["LIMIT_BAL", "PAY_0", "BILL_AMT1", "EDUCATION"],
            "protected": ["SEX", "AGE", "MARRIAGE"],
            "categorical": ["EDUCATION"],
            "derived": {"utilization_1": "BILL_AMT1 / LIMIT_BAL"},
            "params": {"learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 50},
            "seed": 42,
        },
        "tuning": {
            "metric": "auc",
            "chosen_family": "lightgbm",
            "best": {"lightgbm": 0.781234, "logistic": 0.7601},
            "trials": [
                {
                    "family": "logistic",
                    "number": 0,
                    "value": 0.7601,
                    "state": "COMPLETE",
                    "params": {"C": 1.0},
                },
                {"family": "lightgbm", "number": 1, "value": None, "state": "FAIL", "params": {}},
                {
                    "family": "lightgbm",
                    "number": 0,
                    "value": 0.781234,
                    "state": "COMPLETE",
                    "params": {"num_leaves": 31},
                },
            ],
        },
        "metrics": {
            split: {
                "n": n,
                "positive_rate": 0.2212,
                "auc": auc,
                "gini": 2 * auc - 1,
                "ks": 0.41,
                "average_precision": 0.55,
                "brier": 0.135,
                "log_loss": 0.43,
                "ece": 0.012,
            }
            for split, n, auc in (
                ("train", 17_979, 0.8123),
                ("validation", 5_993, 0.7812),
                ("test", 5_993, 0.77654321),
            )
        },
        "intervals": {
            "method": "stratified percentile bootstrap",
            "level": 0.95,
            "rounds": 1000,
            "seed": 42,
            "rows": 5_993,
            "metrics": {
                "auc": {"value": 0.77654321, "low": 0.76123456, "high": 0.79012345},
                "ks": {"value": 0.41, "low": 0.3876, "high": 0.4333},
                "brier": {"value": 0.135, "low": 0.1301, "high": 0.1402},
            },
        },
        "baseline": {
            "family": "logistic",
            "chosen": False,
            "params": {"C": 1.0, "max_iter": 1000},
            "note": "The logistic family's best tuning trial, scored on the same test rows.",
            "validation": {"auc": 0.7601},
            "test": {"n": 5_993, "auc": 0.7601, "ks": 0.39, "brier": 0.139},
            "intervals": {"auc": {"value": 0.7601, "low": 0.7432, "high": 0.7755}},
            "difference": {
                "auc": {"value": 0.01644321, "low": 0.00503, "high": 0.02794},
                "brier": {"value": -0.004, "low": -0.0061, "high": 0.0012},
            },
        },
        "champion": None,
        "comparison": None,
        "diagnostics": {
            "train_validation_gap": 0.0311,
            "train_test_gap": 0.0358,
            "learning_curve": [
                {
                    "train_size": n,
                    "train_metric": 0.85 - n / 1e5,
                    "validation_metric": 0.74 + n / 1e6,
                    "metric": "auc",
                }
                for n in (2_000, 6_000, 12_000, 17_979)
            ],
        },
        "gates": [
            {"name": "test auc >= 0.70", "threshold": 0.70, "value": 0.7765, "passed": True},
            {"name": "ece <= 0.01", "threshold": 0.01, "value": 0.012, "passed": False},
            {"name": "disparate impact >= 0.8", "threshold": 0.8, "value": None, "passed": None},
        ],
        "gains": [
            {
                "group": g,
                "count": 599,
                "positives": 300 - 25 * g,
                "positive_rate": (300 - 25 * g) / 599,
                "min_score": 0.9 - g / 10,
                "max_score": 1.0 - g / 10,
                "cumulative_population_share": g / 10,
                "cumulative_positive_share": min(1.0, g / 6),
                "lift": 2.0 - g / 10,
                "cumulative_lift": 2.2 - g / 10,
            }
            for g in range(1, 11)
        ],
        "explanations": {
            "rows": 5_993,
            "importance": [
                {
                    "rank": 1,
                    "feature": "PAY_0",
                    "mean_abs": 0.42,
                    "mean": 0.01,
                    "share": 0.6,
                    "text": "Recent delinquency",
                },
                {
                    "rank": 2,
                    "feature": "LIMIT_BAL",
                    "mean_abs": 0.2,
                    "mean": -0.02,
                    "share": 0.285714,
                    "text": "Low credit limit",
                },
                {
                    "rank": 3,
                    "feature": "EDUCATION",
                    "mean_abs": 0.08,
                    "mean": 0.0,
                    "share": 0.114286,
                    "text": "EDUCATION",
                },
            ],
            "dependence": [
                {
                    "feature": "PAY_0",
                    "text": "Recent delinquency",
                    "categorical": False,
                    "bins": [
                        {
                            "label": "-1",
                            "low": -1.0,
                            "high": -1.0,
                            "rows": 3_000,
                            "mean_contribution": -0.31,
                        },
                        {
                            "label": "2",
                            "low": 2.0,
                            "high": 2.0,
                            "rows": 2_993,
                            "mean_contribution": 1.25,
                        },
                    ],
                },
                {
                    "feature": "EDUCATION",
                    "text": "EDUCATION",
                    "categorical": True,
                    "bins": [
                        {
                            "label": "university",
                            "low": None,
                            "high": None,
                            "rows": 5_993,
                            "mean_contribution": 0.0,
                        }
                    ],
                },
            ],
        },
        "reasons": {
            "top_k": 2,
            "threshold": 0.5,
            "rows": 5_993,
            "adverse_rows": 701,
            "without_reason": 3,
            "texts": [
                {"feature": "PAY_0", "text": "Recent delinquency", "source": "spec"},
                {"feature": "LIMIT_BAL", "text": "Low credit limit", "source": "spec"},
                {"feature": "EDUCATION", "text": "EDUCATION", "source": "feature name"},
            ],
            "frequency": [
                {
                    "feature": "PAY_0",
                    "text": "Recent delinquency",
                    "principal": 650,
                    "principal_share": 0.927,
                    "mentioned": 690,
                    "mentioned_share": 0.984,
                },
                {
                    "feature": "LIMIT_BAL",
                    "text": "Low credit limit",
                    "principal": 48,
                    "principal_share": 0.068,
                    "mentioned": 500,
                    "mentioned_share": 0.713,
                },
            ],
            "examples": [
                {
                    "row": 20_417,
                    "probability": 0.912345,
                    "decision": "adverse",
                    "reasons": [
                        {
                            "feature": "PAY_0",
                            "text": "Recent delinquency",
                            "contribution": 1.4321,
                            "value": 3,
                        },
                        {
                            "feature": "LIMIT_BAL",
                            "text": "Low credit limit",
                            "contribution": 0.2468,
                            "value": 20_000,
                        },
                    ],
                    "values": {"PAY_0": 3, "LIMIT_BAL": 20_000, "EDUCATION": "university"},
                },
                {
                    "row": 118,
                    "probability": 0.5001,
                    "decision": "adverse",
                    "reasons": [],
                    "values": {"PAY_0": 0, "LIMIT_BAL": 500_000, "EDUCATION": None},
                },
            ],
        },
        "lifecycle": {
            "state": "approved",
            "champion": 2,
            "audit_intact": True,
            "as_of": "2024-05-03T09:00:00.123456+00:00",
            "history": [
                {
                    "seq": 7,
                    "time": "2024-05-02T10:15:01.000001+00:00",
                    "version": 3,
                    "action": "register",
                    "actor": "ana",
                    "role": "developer",
                    "before": {},
                    "after": {"state": "validated"},
                    "note": "registered by keel run",
                    "gates": [
                        {"name": "min_auc", "threshold": 0.7, "value": 0.7765, "passed": True},
                        {"name": "max_ece", "threshold": 0.01, "value": 0.012, "passed": False},
                    ],
                },
                {
                    "seq": 9,
                    "time": "2024-05-03T09:00:00.123456+00:00",
                    "version": 3,
                    "action": "approve",
                    "actor": "bo",
                    "role": "validator",
                    "before": {"state": "validated"},
                    "after": {"state": "approved"},
                    "note": "Reviewed gates, fairness & reasons",
                    "gates": None,
                },
            ],
        },
        "environment": {
            "python": "3.11.9",
            "scikit-learn": "1.9.1",
            "lightgbm": "4.3.0",
            "numpy": "1.26.4",
        },
    }


def _dependences(rows: int = 500) -> list[Dependence]:
    """Dependence data for the card's two dependence features.

    One is numeric with a missing value, one categorical.
    """
    rng = np.random.default_rng(3)
    pay = rng.integers(-2, 9, rows).astype(float)
    pay[0] = np.nan
    education = rng.integers(0, 3, rows).astype(float)
    return [
        Dependence("PAY_0", pay, 0.3 * np.nan_to_num(pay) + rng.normal(0, 0.05, rows), None),
        Dependence(
            "EDUCATION",
            education,
            rng.normal(0, 0.1, rows),
            ["graduate school", "university", "others"],
        ),
    ]


def _render(card: dict, test_set: tuple) -> str:
    return render_model_card(card, draw_plots(card, *test_set, _dependences()))


@pytest.fixture
def card() -> dict:
    return _card()


@pytest.fixture(scope="module")
def rendered(test_set: tuple) -> str:
    """The full card rendered once; tests that only read the HTML share it."""
    return _render(_card(), test_set)


def _images(html: str) -> list[str]:
    return re.findall(r'src="(data:image/png;base64,[A-Za-z0-9+/=]+)"', html)


def test_model_card_renders_every_section_in_order(rendered: str) -> None:
    html = rendered
    positions = [html.find(f">{heading}</h2>") for heading in SECTION_HEADINGS]
    assert all(position > 0 for position in positions), dict(
        zip(SECTION_HEADINGS, positions, strict=True)
    )
    assert positions == sorted(positions)
    assert html.find("Test AUC") < positions[1]


def test_model_card_shows_headline_metrics_to_four_decimals(rendered: str) -> None:
    html = rendered
    assert "0.7765" in html
    assert "0.77654321" not in html
    assert "0.5531" in html  # Gini = 2 * 0.77654321 - 1
    assert "17,979" in html


def test_model_card_embeds_every_png_plot(rendered: str) -> None:
    images = _images(rendered)
    assert (
        len(images) == 6 + 1 + 2
    )  # performance and learning curve, importance, two dependence plots
    assert len(set(images)) == len(images)
    for image in images:
        assert base64.b64decode(image.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")


def test_model_card_references_no_external_resources(rendered: str) -> None:
    html = rendered
    assert not re.search(
        r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, flags=re.IGNORECASE
    )
    assert "@import" not in html
    assert "url(" not in html
    assert "<script" not in html


def test_model_card_escapes_user_text(card: dict, test_set: tuple) -> None:
    card["purpose"] = "<script>alert('x')</script>"
    card["limitations"] = ["<img src=x onerror=alert(1)>"]
    card["data"]["contract"][0]["description"] = "<b>bold</b>"
    card["tracking_uri"] = "https://mlflow.example.com/?a=1&b=2"
    card["reasons"]["texts"][0]["text"] = "<i>late</i>"
    card["lifecycle"]["history"][1]["note"] = "<script>steal()</script>"
    html = _render(card, test_set)
    assert "<script>" not in html
    assert "&lt;i&gt;late&lt;/i&gt;" in html and "<i>late</i>" not in html
    assert "&lt;script&gt;steal()&lt;/script&gt;" in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "<img src=x" not in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    assert 'href="https:' not in html
    assert "https://mlflow.example.com/?a=1&amp;b=2" in html


def test_model_card_renders_identical_bytes_twice(rendered: str, test_set: tuple) -> None:
    assert _render(_card(), test_set).encode() == rendered.encode()


def test_model_card_states_protected_attributes_are_excluded(rendered: str) -> None:
    html = rendered
    assert "SEX, AGE, MARRIAGE" in html
    assert "excluded from the model's inputs, kept for assessment" in html


def test_model_card_sorts_trials_best_first_and_marks_gates(rendered: str) -> None:
    html = rendered
    trials = html[html.find("Trials (best first)") : html.find('id="performance"')]
    assert trials.find("0.7812") < trials.find("0.7601") < trials.find("FAIL")
    gates = html[html.find('id="gates"') : html.find('id="limitations"')]
    for status in ("pass", "fail", "not evaluated"):
        assert f">{status}</span>" in gates
    assert "blocks approval" in gates


def test_model_card_gives_mlflow_ui_command(rendered: str) -> None:
    assert "mlflow ui --backend-store-uri &#39;file:///srv/keel/ml runs&#39;" in rendered


def test_model_card_shows_dash_for_missing_optional_keys(test_set: tuple) -> None:
    card = {
        "title": "Bare card",
        "model_name": "m",
        "version": None,
        "intended_use": None,
        "owner": None,
        "data": None,
        "method": {"family": "logistic"},
        "metrics": {"test": {"auc": 0.7}},
    }
    html = render_model_card(card, draw_plots(card, *test_set))
    assert "<h1>Bare card</h1>" in html
    assert "version —" in html
    assert "<dt>Owner</dt><dd>—</dd>" in html
    assert '<dt>SHA-256</dt><dd class="mono">—</dd>' in html
    assert '<span class="value">—</span>' in html  # test Gini and KS are missing
    assert "mlflow ui" not in html
    assert len(_images(html)) == 6
    assert "(no explanations recorded)" in html and "(no reason codes recorded)" in html
    assert "(no audited transitions recorded)" in html


def test_model_card_renders_empty_card(test_set: tuple) -> None:
    html = render_model_card({}, draw_plots({}, *test_set))
    for heading in SECTION_HEADINGS:
        assert f">{heading}</h2>" in html
    assert "None" not in html.replace("none", "")


def test_write_model_card_writes_html_and_round_tripping_json(
    card: dict, test_set: tuple, rendered: str, tmp_path: Path
) -> None:
    card["data"]["rows_read"] = np.int64(30_000)
    html_path, json_path = write_model_card(
        card, draw_plots(card, *test_set, _dependences()), tmp_path / "out" / "card"
    )
    assert html_path == tmp_path / "out" / "card" / "model_card.html"
    assert json_path.name == "model_card.json"
    assert html_path.read_text(encoding="utf-8") == rendered  # numpy integers display like ints
    loaded = json.loads(json_path.read_text(encoding="utf-8"))
    assert loaded == json.loads(json.dumps(card, default=lambda value: value.item()))
    assert loaded["data"]["rows_read"] == 30_000
    assert list(loaded) == list(card)
    assert sorted(p.name for p in html_path.parent.iterdir()) == [
        "model_card.html",
        "model_card.json",
        "plots.json",
    ]
    assert html_path.stat().st_size < 1_000_000


def test_a_stored_card_renders_again_to_the_same_bytes_without_test_scores(
    card: dict, test_set: tuple, rendered: str, tmp_path: Path
) -> None:
    html_path, _ = write_model_card(card, draw_plots(card, *test_set, _dependences()), tmp_path)
    stored, stored_plots = read_model_card(tmp_path)
    assert (
        render_model_card(stored, stored_plots) == rendered == html_path.read_text(encoding="utf-8")
    )
    assert sorted(stored_plots) == sorted(
        [
            "roc",
            "pr",
            "calibration",
            "score_distribution",
            "gains",
            "learning_curve",
            "importance",
            "dependence/PAY_0",
            "dependence/EDUCATION",
        ]
    )


def test_read_model_card_refuses_a_folder_without_a_stored_card(tmp_path: Path) -> None:
    (tmp_path / "model_card.json").write_text("{}")
    with pytest.raises(
        CardError, match=r"no stored model card to render in .*: plots\.json missing"
    ):
        read_model_card(tmp_path)


def test_render_model_card_refuses_a_non_mapping_card(test_set: tuple) -> None:
    with pytest.raises(TypeError, match="`card` must be a mapping, but got list"):
        render_model_card([], draw_plots({}, *test_set))


def test_plots_refuse_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="same length, but got 3 and 2"):
        plots.roc_plot([0, 1, 0], [0.1, 0.2])


def test_plots_refuse_non_binary_labels() -> None:
    with pytest.raises(ValueError, match=r"only 0 and 1 .* labels \[0, 1, 2\]"):
        plots.pr_plot([0, 1, 2], [0.1, 0.2, 0.3])


def test_plots_refuse_nan_scores() -> None:
    with pytest.raises(ValueError, match="1 values are NaN or infinite"):
        plots.gains_plot([0, 1, 0], [0.1, float("nan"), 0.3])


def test_calibration_plot_refuses_bad_bins() -> None:
    with pytest.raises(ValueError, match="`bins` must be a positive integer, but got bins=0"):
        plots.calibration_plot([0, 1], [0.1, 0.9], bins=0)


def test_plots_draw_a_note_when_only_one_class() -> None:
    y, score = np.zeros(50, dtype=int), np.linspace(0, 1, 50)
    for plot in (
        plots.roc_plot,
        plots.pr_plot,
        plots.gains_plot,
        plots.calibration_plot,
        plots.score_distribution_plot,
    ):
        assert plot(y, score).startswith("data:image/png;base64,")


def test_learning_curve_plot_refuses_points_without_keys() -> None:
    with pytest.raises(
        ValueError, match=r"point 0 must have keys .* lacks \['validation_metric'\]"
    ):
        plots.learning_curve_plot([{"train_size": 10, "train_metric": 0.8}])


def test_card_shows_recodings_with_row_counts_and_derived_definitions(rendered: str) -> None:
    card_html = rendered
    assert "<td>EDUCATION</td><td>5 -&gt; 4</td><td>280</td>" in card_html
    assert (
        "Recoding (from -&gt; to)" in card_html
        and "<thead><tr><th>Column</th><th>From</th>" not in card_html
    )
    assert (
        '<td class="mono">utilization_1</td><td class="mono">BILL_AMT1 / LIMIT_BAL</td>'
        in card_html
    )


def test_card_shows_importance_with_reason_texts_and_dependence_bins(rendered: str) -> None:
    section = rendered[rendered.find('id="explanations"') : rendered.find('id="reasons"')]
    assert "over 5,993 test rows" in section
    assert (
        '<td class="mono">LIMIT_BAL</td>\n'
        '        <td class="n">0.2000</td><td class="n">0.286</td>\n'
        '        <td class="n">-0.0200</td><td>Low credit limit</td>'
    ) in section
    assert section.find(">PAY_0<") < section.find(">LIMIT_BAL<") < section.find(">EDUCATION<")
    assert (
        'alt="Dependence plot of PAY_0"' in section
        and 'alt="Dependence plot of EDUCATION"' in section
    )
    assert "<td>university</td>" in section and '<td class="n">1.2500</td>' in section


def test_card_flags_features_without_a_reason_text_and_shows_worked_examples(rendered: str) -> None:
    section = rendered[rendered.find('id="reasons"') : rendered.find('id="gates"')]
    assert (
        "1 feature(s) have no reason text in the spec (reasons.texts):\n    EDUCATION." in section
    )
    assert '<span class="flag">feature name (not in the spec)</span>' in section
    assert "701 of 5,993" in section
    assert (
        '<td>Recent delinquency</td><td class="mono">PAY_0</td>\n        <td class="n">650</td>'
        in section
    )
    assert "Test row 20417: probability 0.9123, decision adverse" in section
    assert '<td class="mono">20000</td><td class="n">+0.2468</td>' in section
    assert "No feature raised this row's score" in section


def test_card_shows_state_and_audit_history_with_gate_outcomes(rendered: str) -> None:
    section = rendered[rendered.find('id="lifecycle"') : rendered.find('id="limitations"')]
    assert '<span class="state">approved</span>' in rendered[: rendered.find("<nav>")]
    assert "version 2" in section and "intact" in section
    assert "2024-05-03 09:00:00" in section
    assert "<td>approve</td><td>bo</td><td>validator</td>" in section
    assert "state: validated -&gt; approved" in section
    assert "Reviewed gates, fairness &amp; reasons" in section
    assert "min_auc pass, max_ece fail" in section
    assert "keel card credit_default 3" in section


def test_importance_plot_refuses_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="same length, but got 2 and 1"):
        plots.importance_plot(["a", "b"], [0.1])


def test_dependence_plot_draws_a_note_when_every_value_is_missing() -> None:
    assert plots.dependence_plot("x", [np.nan, np.nan], [0.1, -0.1]).startswith(
        "data:image/png;base64,"
    )


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium on PATH")
def test_model_card_renders_in_a_real_browser(rendered: str, tmp_path: Path) -> None:
    from PIL import Image

    page, shot = tmp_path / "card.html", tmp_path / "card.png"
    page.write_text(rendered, encoding="utf-8")
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1000,1400",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    image = Image.open(shot).convert("RGB")
    assert image.size == (1000, 1400)
    colors = {color for _, color in image.getcolors(maxcolors=1_000_000)}
    assert (0x1F, 0x4E, 0x79) in colors  # the headline boxes and section rules are drawn
    assert len(colors) > 50  # text and an embedded plot, not a blank or error page


def _summary(html: str) -> str:
    start = html.find('<section id="decision-summary"')
    assert start > 0
    return html[start : html.find("</section>", start)]


def test_decision_summary_is_the_first_section_after_the_title(rendered: str) -> None:
    title_end = rendered.find("</h1>")
    first_section = rendered.find("<section")
    assert 0 < title_end < first_section == rendered.find('<section id="decision-summary"')
    between = rendered[title_end:first_section]
    assert "<table" not in between and "<dl" not in between and "<h2" not in between
    assert (
        first_section
        < rendered.find('<dl class="meta">', title_end)
        < rendered.find('<section id="purpose"')
    )
    assert '<span class="state">approved</span>' in _summary(rendered)


def test_decision_summary_lists_failing_gates_first_and_marks_them(rendered: str) -> None:
    summary = _summary(rendered)
    assert (
        '<p class="verdict fail">1 of 3 gates fail and 1 not evaluated: approval is blocked.</p>'
        in summary
    )
    table = summary[summary.find('<table class="summary-gates">') : summary.find("</table>")]
    failing, unknown, passing = (
        table.find(name)
        for name in ("ece &lt;= 0.01", "disparate impact &gt;= 0.8", "test auc &gt;= 0.70")
    )
    assert 0 < failing < unknown < passing
    rows = re.findall(
        r'<tr class="row-([a-z-]+)"><td><span class="status \1">([a-z ]+)</span>', table
    )
    assert rows == [("fail", "fail"), ("not-evaluated", "not evaluated"), ("pass", "pass")]
    assert (
        '<td class="n">0.0120</td><td></td>\n        <td class="n">0.0100</td>' in table
    )  # value, then threshold


def test_decision_summary_gives_rules_and_unbounded_fairness_after_the_gates(
    card: dict, test_set: tuple
) -> None:
    card["gates"] = [
        {"name": "min_auc", "threshold": 0.7, "value": 0.7765, "passed": True},
        {"name": "min_adverse_impact_ratio[SEX]", "threshold": 0.8, "value": 0.74, "passed": False},
    ]
    card["fairness"] = [
        {
            "attribute": "SEX",
            "groups": [],
            "adverse_impact_ratio": 0.74,
            "equal_opportunity_difference": 0.061,
        }
    ]
    table = _summary(_render(card, test_set))
    assert "1 of 2 gates fail: approval is blocked." in table
    fairness, auc = table.find(">min_adverse_impact_ratio[SEX]<"), table.find(">min_auc<")
    unbounded = table.find(">equal_opportunity_difference[SEX]<")
    assert 0 < fairness < auc < unbounded
    assert '<td class="n">0.7400</td><td>&gt;=</td>\n        <td class="n">0.8000</td>' in table
    assert '<span class="status no-bound">no bound</span>' in table and "0.0610" in table
    assert ">adverse_impact_ratio[SEX]<" not in table  # it has its gate


def test_decision_summary_shows_the_test_auc_interval_and_the_baseline(rendered: str) -> None:
    summary = _summary(rendered)
    assert "<strong>0.7765</strong>" in summary
    assert (
        "(95% interval 0.7612 to 0.7901; stratified bootstrap,\n"
        "      1,000 resamples of the 5,993 test rows)" in summary
    )
    assert "test AUC 0.7765 against 0.7601 for the logistic baseline" in summary
    assert "<strong>+0.0164</strong> (95% interval\n      +0.0050 to +0.0279" in summary
    assert "better than the baseline" in summary
    performance = rendered[rendered.find('id="performance"') : rendered.find('id="bias-variance"')]
    for row in (
        '<td>auc</td><td class="n">0.7765</td><td class="n">0.7612</td><td class="n">0.7901</td>',
        '<td>ks</td><td class="n">0.4100</td><td class="n">0.3876</td><td class="n">0.4333</td>',
    ):
        assert f"<tr>{row}</tr>" in performance
    baseline = performance[performance.find('id="baseline"') :]
    cells = '<td class="n">{}</td>\n        <td class="n">{}</td>\n        <td>{}'
    assert cells.format("+0.0164", "+0.0050 to +0.0279", "this model</td>") in baseline
    assert (
        cells.format("-0.0040", "-0.0061 to +0.0012", "neither (the interval holds 0)</td>")
        in baseline
    )
    assert "0.79012345" not in rendered and "(no confidence interval recorded)" not in summary


def test_decision_summary_falls_back_to_the_validation_comparison(
    card: dict, test_set: tuple
) -> None:
    del card["baseline"], card["intervals"]
    summary = _summary(_render(card, test_set))
    assert (
        "validation auc 0.7812 against 0.7601 for the logistic\n      baseline (+0.0211)" in summary
    )
    assert "the baseline\n      was not scored on the test rows" in summary
    assert "(no confidence interval recorded)" in summary
    card["tuning"]["best"] = {"lightgbm": 0.78}
    summary = _summary(_render(card, test_set))
    assert "— (no logistic baseline: the run tuned lightgbm)" in summary


def test_decision_summary_shows_approval_conditions(
    card: dict, test_set: tuple, rendered: str
) -> None:
    assert "none: approved without conditions" in _summary(rendered)
    card["lifecycle"]["history"][1]["after"]["conditions"] = (
        "Re-validate in 6 months; cap limits at <b>10%</b>"
    )
    summary = _summary(_render(card, test_set))
    assert (
        "<li><strong>Re-validate in 6 months; cap limits at &lt;b&gt;10%&lt;/b&gt;</strong> "
        "(approved by bo, "
        "validator, 2024-05-03 09:00:00 UTC: Reviewed gates, fairness &amp; reasons)</li>"
    ) in summary
    assert "without conditions" not in summary
    card["lifecycle"] = {"state": "validated", "history": card["lifecycle"]["history"][:1]}
    assert "— (no approval recorded)" in _summary(_render(card, test_set))


def test_card_renders_the_champion_comparison_when_the_card_holds_one(
    card: dict, test_set: tuple, rendered: str
) -> None:
    assert 'id="comparison"' not in rendered and "<dt>Champion</dt>" not in rendered
    card["champion"] = {
        "version": 2,
        "test": {"auc": 0.7701, "brier": 0.131},
        "difference": {"auc": {"value": 0.00644321, "low": 0.001, "high": 0.012}},
    }
    html = _render(card, test_set)
    assert "champion (version 2): <strong>+0.0064</strong>" in _summary(html)
    section = html[html.find('id="comparison"') : html.find('id="bias-variance"')]
    assert "Against the champion (version 2)" in section
    assert (
        '<tr><td>auc</td><td class="n">0.7765</td><td class="n">0.7701</td>\n'
        '        <td class="n">+0.0064</td>\n'
        '        <td class="n">+0.0010 to +0.0120</td>\n        <td>this model</td></tr>'
    ) in section
    assert (
        '<td class="n">+0.0040</td>\n        <td class="n">—</td>\n        <td>champion</td>'
        in section
    )  # brier


def test_tuning_trials_are_collapsed_and_long_tables_only(
    card: dict, test_set: tuple, rendered: str
) -> None:
    tuning = rendered[
        rendered.find('<section id="tuning"') : rendered.find('<section id="performance"')
    ]
    opened, table, closed = (
        tuning.find("<details"),
        tuning.find("<table", tuning.find("Trials (best first)")),
        tuning.find("</details>"),
    )
    assert 0 < opened < table < tuning.find("</table>", table) < closed
    assert "Tuning trials: 3 rows" in tuning
    data = rendered[rendered.find('<section id="data"') : rendered.find('<section id="method"')]
    assert "<details" not in data  # two contract rows: shown
    card["data"]["contract"] = [{"column": f"c{i}", "dtype": "int"} for i in range(16)]
    card["tuning"]["trials"] = [
        {
            "family": "lightgbm",
            "number": i,
            "value": 0.7,
            "state": "complete",
            "params": {"num_leaves": i},
        }
        for i in range(50)
    ]
    html = _render(card, test_set)
    data = html[html.find('<section id="data"') : html.find('<section id="method"')]
    assert data.find("<details") < data.find(">c15<") < data.find("</details>")
    assert "Data contract: 16 rows" in data
    summary_end = html.find("</section>", html.find('<section id="decision-summary"'))
    assert html.find("Tuning trials: 50 rows") > html.find(
        "ece &lt;= 0.01"
    ) and summary_end < html.find(">c0<")


def test_an_html_payload_in_the_description_or_purpose_renders_as_text(
    card: dict, test_set: tuple
) -> None:
    card["description"] = "<script>alert(1)</script>"
    card["purpose"] = "<script>alert(1)</script>"
    card["gates"][0]["name"] = "<script>alert(1)</script>"
    card["lifecycle"]["history"][1]["after"]["conditions"] = "<script>alert(1)</script>"
    html = _render(card, test_set)
    assert "<script" not in html
    assert (
        html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 5
    )  # description, purpose, conditions, 2 gate tables
    assert "<dt>Description</dt><dd>&lt;script&gt;alert(1)&lt;/script&gt;</dd>" in html


def test_compare_metrics_knows_which_metrics_are_better_lower() -> None:
    rows = compare_metrics(
        {"n": 10, "auc": 0.8, "brier": 0.12, "ece": 0.02, "ks": 0.4, "extra": 1.0},
        {"n": 12, "auc": 0.75, "brier": 0.10, "ece": 0.02, "ks": None, "extra": 2.0},
    )
    assert [(r["metric"], r["better"]) for r in rows] == [
        ("auc", "this"),
        ("brier", "other"),
        ("ece", "same"),
        ("extra", "other"),
    ]
    assert rows[0]["difference"] == pytest.approx(0.05) and rows[1]["difference"] == pytest.approx(
        0.02
    )


def test_card_says_how_the_family_was_chosen_and_by_what_margin(
    card: dict, test_set: tuple
) -> None:
    card["tuning"]["selection"] = {
        "rule": "one_se",
        "metric": "auc",
        "scheme": {"method": "stratified", "folds": 5},
        "families": {
            "lightgbm": {"mean": 0.7830, "se": 0.0040, "folds": [0.78, 0.79, 0.777, 0.785, 0.783]},
            "logistic": {
                "mean": 0.7810,
                "se": 0.0035,
                "folds": [0.779, 0.786, 0.776, 0.782, 0.782],
            },
        },
        "best_family": "lightgbm",
        "chosen_family": "logistic",
    }
    html = _render(card, test_set)
    summary = _summary(html)
    assert "logistic, by the simplest family whose mean is within one standard error" in summary
    assert "(auc, 5 stratified folds)" in summary
    assert "margin over lightgbm <strong>-0.0020</strong>" in summary
    assert "lightgbm had the best mean but not by more than one standard error" in summary
    choice = html[html.find('id="family-choice"') : html.find("Trials (best first)")]
    assert "<td>logistic <strong>(chosen)</strong></td>" in choice
    assert "<td>lightgbm (best mean)</td>" in choice
    assert '<td class="n">0.7830</td><td class="n">0.0040</td><td class="n">5</td>' in choice
    assert "refit" not in choice

    card["tuning"]["selection"]["refit"] = {"rows": 23972, "rounds": 144}
    choice = _render(card, test_set).split('id="family-choice"')[1]
    assert (
        "refit on the 23972 train and validation rows together, for the 144 boosting rounds"
        in choice.split("Trials (best first)")[0]
    )

    card["tuning"]["selection"].update(rule="best", chosen_family="lightgbm", metric="log_loss")
    card["tuning"]["selection"]["families"]["lightgbm"]["mean"] = 0.41
    card["tuning"]["selection"]["families"]["logistic"]["mean"] = 0.43
    summary = _summary(_render(card, test_set))
    assert "lightgbm, by the family with the best mean" in summary
    assert "margin over logistic <strong>+0.0200</strong>" in summary  # lower log loss is better
    assert "not by more than one standard error" not in summary

    del card["tuning"]["selection"]
    assert "(no selection record" in _summary(_render(card, test_set))


def test_card_shows_card_precision_by_the_handbook_rule_beside_each_day_alone(
    card: dict, test_set: tuple
) -> None:
    top = {"entity": "CUSTOMER_ID", "k": 100, "name": "card", "remove_detected": True}
    day = {"rows": 8000, "positives": 60, "auc": 0.9, "average_precision": 0.6}
    card["daily"] = {
        "rows": [
            {
                **day,
                "day": "2018-08-08",
                "entities": 4000,
                "positive_entities": 40,
                "precision_at_100": 0.31,
                "entities_blocked": 0,
                "precision_at_100_days_alone": 0.31,
            },
            {
                **day,
                "day": "2018-08-09",
                "entities": 4000,
                "positive_entities": 38,
                "precision_at_100": 0.22,
                "entities_blocked": 17,
                "precision_at_100_days_alone": 0.35,
            },
        ],
        "precision_at_k": top,
    }
    html = _render(card, test_set)
    assert "<th>Blocked cards</th>" not in html  # a numeric header, right-aligned
    assert '<th class="n">Blocked cards</th>' in html
    assert (
        '<td class="n">0.2200</td><td class="n">17</td>\n        <td class="n">0.3500</td>' in html
    )
    assert "found positive in an earlier day's top 100 is blocked" in html

    top["remove_detected"] = False
    html = _render(card, test_set)
    assert "Blocked cards" not in html and "Handbook" not in html
