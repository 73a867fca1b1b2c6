"""Monitoring report: plots over time, alerts and per-window tables.

They are rendered for real in headless Chromium.
"""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from keel.monitoring.monitor import monitor
from keel.reports.monitoring import render_monitoring_report, write_monitoring_report
from keel.reports.monitoring_plots import monitoring_plots, series
from keel.spec import MonitoringSpec, parse_spec
from keel.training.trainer import train_model

from browsers import chromium
from factories import loans_spec, make_loans

START = pd.Timestamp("2024-01-01")  # a Monday: eight weekly windows from here
SPARSE_WEEK = "2024-01-22/2024-01-28"  # too few rows to judge
SHIFT_FROM = pd.Timestamp("2024-02-05")  # debt is scaled up from this week on
LABELS_UNTIL = pd.Timestamp("2024-02-12")  # later events have no label yet
DATA_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")
PLOT_ALTS = {
    "performance": "AUC over time: estimated and realized",
    "drift": "Drift heatmap: PSI per feature and window",
    "volume": "Rows, labelled rows and positive rates per window",
    "fairness": "Adverse impact ratio per protected attribute over time",
}


@pytest.fixture(scope="module")
def report() -> dict:
    """A real monitoring pass: a small LightGBM model, eight weeks of scored loans.

    Debt is shifted in the last three weeks.
    """
    spec = parse_spec(
        loans_spec(
            "data.csv",
            tuning={"trials": 2, "threads": 1},
            models={
                "families": ["lightgbm"],
                "lightgbm": {"max_rounds": 100, "learning_rate": {"low": 0.08, "high": 0.15}},
            },
        )
    )
    frame = make_loans(3000)
    outcome = train_model(frame, spec)
    model = outcome.model

    events = make_loans(3200, seed=1)
    rng = np.random.default_rng(3)
    events["time"] = START + pd.to_timedelta(
        np.sort(rng.uniform(0, 56 * 86400, len(events))), unit="s"
    )
    sparse = (
        (events["time"] >= "2024-01-22")
        & (events["time"] < "2024-01-29")
        & (np.arange(len(events)) % 5 > 0)
    )
    events = events[~sparse].reset_index(drop=True)
    shifted = events["time"] >= SHIFT_FROM
    events.loc[shifted, "debt"] = (events.loc[shifted, "debt"] * 1.6).round()
    events["probability"] = model.predict_proba(events)
    events["version"] = 1
    events["label"] = events["defaulted"].astype(float).where(events["time"] < LABELS_UNTIL)
    events["label_time"] = pd.NaT
    result = monitor(
        events,
        model,
        MonitoringSpec(min_rows=100),
        name="loans <pd>",
        protected=["gender"],
        as_of=START + pd.Timedelta(days=56),
    )  # all eight weeks closed
    return result.to_dict()


@pytest.fixture(scope="module")
def html(report: dict) -> str:
    return render_monitoring_report(report)


def _section(page: str, name: str) -> str:
    start = page.find(f'<section id="{name}">')
    return page[start : page.find("</section>", start)]


def test_the_fixture_has_what_the_report_must_show(report: dict) -> None:
    windows = {w["window"]: w for w in report["windows"]}
    assert len(windows) == 8
    assert windows[SPARSE_WEEK]["drift"] is None and windows[SPARSE_WEEK]["realized"] is None
    assert (
        windows["2024-02-19/2024-02-25"]["realized"] is None
        and windows["2024-02-19/2024-02-25"]["drift"]
    )
    assert ("drift", "debt") in {(a["kind"], a["subject"]) for a in report["alerts"]}
    assert any(w["fairness"] for w in report["windows"])


def test_headline_counts_alerts_by_severity(report: dict, html: str) -> None:
    header = html[: html.find("<nav>")]
    severities = [a["severity"] for a in report["alerts"]]
    assert "loans &lt;pd&gt;" in header and "<pd>" not in html
    assert (
        f'<span class="label">Alerts</span><span class="value">{severities.count("alert")}</span>'
        in header
    )
    assert (
        f'<span class="label">Warnings</span><span class="value">{severities.count("warn")}</span>'
        in header
    )
    assert (
        '<span class="label">Test AUC</span>'
        f'<span class="value">{report["reference"]["auc"]:.4f}</span>' in header
    )
    assert report["as_of"] in header


def test_every_alert_is_listed_with_its_window_and_message(report: dict, html: str) -> None:
    section = _section(html, "alerts")
    assert f"<h2>Alerts ({len(report['alerts'])})</h2>" in section
    assert section.count('<tr><td class="mono">') == len(report["alerts"])
    position = 0
    for alert in report["alerts"]:
        row = (
            f'<tr><td class="mono">{alert["window"]}</td>'
            f'<td><span class="level {alert["severity"]}">'
        )
        found = section.find(row, position)
        assert found >= position, alert
        assert alert["message"] in section[found : section.find("</tr>", found)]
        position = found + 1


def test_each_plot_is_embedded_as_a_png(report: dict, html: str) -> None:
    from PIL import Image

    drawn = monitoring_plots(report)
    assert sorted(drawn) == sorted(PLOT_ALTS)
    section = _section(html, "plots")
    for name, alt in PLOT_ALTS.items():
        assert f'<img src="{drawn[name]}" alt="{alt}">' in section
        image = Image.open(io.BytesIO(base64.b64decode(drawn[name].split(",", 1)[1])))
        assert image.format == "PNG" and image.width >= 600 and image.height >= 200
    assert len(DATA_URI.findall(html)) == len(PLOT_ALTS)


def test_windows_are_in_time_order_with_gaps_shown_as_such(report: dict, html: str) -> None:
    section = _section(html, "windows")
    labels = [w["window"] for w in report["windows"]]
    positions = [section.find(f'<td class="mono">{label}</td>') for label in labels]
    assert -1 not in positions and positions == sorted(positions)
    rows = {
        label: section[p : section.find("</tr>", p)]
        for label, p in zip(labels, positions, strict=True)
    }
    assert (
        "not judged (too few rows)" in rows[SPARSE_WEEK] and "too few labels" in rows[SPARSE_WEEK]
    )
    assert "too few labels" in rows["2024-02-19/2024-02-25"]
    assert '<span class="level alert">alert</span>' in rows["2024-02-19/2024-02-25"]
    first = report["windows"][0]
    assert f'<td class="n">{first["realized"]["auc"]:.4f}</td>' in rows[first["window"]]
    assert f'<td class="n">{first["estimated"]["auc"]:.4f}</td>' in rows[first["window"]]


def test_drift_detail_lists_the_drifted_features_of_each_judged_window(
    report: dict, html: str
) -> None:
    section = _section(html, "drift")
    judged = [w for w in report["windows"] if w["drift"]]
    assert (
        section.count("<details") == len(judged)
        and SPARSE_WEEK not in section.split("Not judged")[0]
    )
    last = report["windows"][-1]
    detail = section[section.find(f'<span class="mono">{last["window"]}</span>') :]
    detail = detail[: detail.find("</details>")]
    debt = next(f for f in last["drift"]["features"] if f["name"] == "debt")
    assert (
        '<td class="mono">debt</td><td>numeric</td><td><span class="level alert">alert</span></td>'
        in detail
    )
    assert (
        f'<td class="n">{debt["psi"]:.4f}</td><td class="n">{debt["ks_statistic"]:.4f}</td>'
        in detail
    )
    assert f'<td class="n">{debt["adjusted_pvalue"]:.2g}</td>' in detail
    quiet = [f["name"] for f in last["drift"]["features"] if not f["drifted"]]
    assert quiet and all(f'<td class="mono">{name}</td>' not in detail for name in quiet)
    assert f'Not judged (too few rows): <span class="mono">{SPARSE_WEEK}</span>' in section


def test_no_none_or_nan_text_leaks(html: str) -> None:
    text = DATA_URI.sub("", html)
    assert not re.search(r"\b(None|nan|NaN|null|undefined)\b", text)


def test_gaps_are_nan_not_zero(report: dict) -> None:
    realized = series(report["windows"], "realized", "auc")
    missing = [w["realized"] is None for w in report["windows"]]
    assert np.isnan(realized).tolist() == missing and any(missing)
    assert np.all(realized[~np.isnan(realized)] > 0.5)


def test_rendering_is_deterministic_and_written_atomically(
    report: dict, html: str, tmp_path: Path
) -> None:
    html_path, json_path = write_monitoring_report(report, tmp_path / "out")
    assert (html_path.name, json_path.name) == ("monitoring.html", "monitoring.json")
    assert html_path.read_text(encoding="utf-8") == html
    assert json.loads(json_path.read_text(encoding="utf-8")) == report
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "monitoring.html",
        "monitoring.json",
    ]


def test_a_report_without_windows_or_fairness_still_renders() -> None:
    empty = render_monitoring_report(
        {
            "model": "m",
            "as_of": "2024-01-01",
            "window": "day",
            "reference": {},
            "windows": [],
            "alerts": [],
        }
    )
    assert "No alerts" in empty and "No window had enough rows to judge drift." in empty
    assert len(DATA_URI.findall(empty)) == 3 and "Adverse impact ratio per protected" not in empty
    window = {
        "window": "2024-01-01",
        "start": "2024-01-01",
        "end": "2024-01-01",
        "rows": 5,
        "labelled": 0,
        "versions": [2],
        "drift": None,
        "estimated": {"auc": 0.7, "positive_rate": 0.2},
        "realized": None,
        "fairness": None,
        "alerts": [],
    }
    sparse = render_monitoring_report({"model": "m", "windows": [window], "alerts": []})
    assert "not judged (too few rows)" in sparse and "too few labels" in sparse
    assert sorted(monitoring_plots({"windows": [window]})) == ["drift", "performance", "volume"]
    assert not re.search(r"\b(None|nan)\b", DATA_URI.sub("", sparse))


def test_render_refuses_what_is_not_a_report() -> None:
    with pytest.raises(TypeError, match="`report` must be a mapping"):
        render_monitoring_report([1, 2])  # type: ignore[arg-type]


def _screenshot(chromium: str, page: Path, shot: Path, profile: Path) -> object:
    from PIL import Image

    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--force-color-profile=srgb",
            f"--user-data-dir={profile}",
            "--window-size=1000,2600",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return Image.open(shot).convert("RGB")


@pytest.mark.slow
def test_monitoring_report_renders_its_plots_in_a_real_browser(
    report: dict, html: str, tmp_path: Path
) -> None:
    """Screenshot the page, then a copy whose plots are solid colour blocks of the same size.

    The blocks show where the browser laid each plot out; in the real screenshot that region
    must hold the plot itself: close to the PNG scaled to the region, and far from blank.
    """
    from PIL import Image, ImageChops, ImageStat

    binary = chromium()
    drawn = monitoring_plots(report)
    markers = dict(
        zip(PLOT_ALTS, [(255, 0, 255), (0, 255, 255), (0, 255, 0), (0, 0, 255)], strict=True)
    )
    solid = html
    pngs = {}
    for name, uri in drawn.items():
        pngs[name] = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")
        block = io.BytesIO()
        Image.new("RGB", pngs[name].size, markers[name]).save(block, format="PNG")
        solid = solid.replace(
            uri, "data:image/png;base64," + base64.b64encode(block.getvalue()).decode("ascii")
        )
    (tmp_path / "real.html").write_text(html, encoding="utf-8")
    (tmp_path / "blocks.html").write_text(solid, encoding="utf-8")
    real = _screenshot(
        binary, tmp_path / "real.html", tmp_path / "real.png", tmp_path / "profile-real"
    )
    blocks = _screenshot(
        binary, tmp_path / "blocks.html", tmp_path / "blocks.png", tmp_path / "profile-blocks"
    )

    assert real.size == blocks.size == (1000, 2600)
    colors = {color for _, color in real.getcolors(maxcolors=1_000_000)}
    assert (0x1F, 0x4E, 0x79) in colors and len(
        colors
    ) > 200  # the page's accent, text and plots: not blank
    for name, color in markers.items():
        mask = Image.eval(
            ImageChops.difference(blocks, Image.new("RGB", blocks.size, color)).convert("L"),
            lambda v: 255 if v == 0 else 0,
        )
        box = mask.getbbox()
        assert box is not None, f"the {name} plot is not laid out in the first 2600 px"
        width, height = box[2] - box[0], box[3] - box[1]
        assert width >= 600 and abs(height / width - pngs[name].height / pngs[name].width) < 0.02, (
            name,
            box,
        )
        region = real.crop(box)
        expected = pngs[name].resize(region.size, Image.Resampling.BILINEAR)
        white = Image.new("RGB", region.size, (255, 255, 255))
        to_plot = sum(ImageStat.Stat(ImageChops.difference(region, expected)).mean) / 3
        to_blank = sum(ImageStat.Stat(ImageChops.difference(region, white)).mean) / 3
        drawn_share = sum(1 for v in region.convert("L").getdata() if v < 200) / (width * height)
        assert to_plot < 3 and to_blank > 5 * to_plot and drawn_share > 0.02, (
            name,
            to_plot,
            to_blank,
            drawn_share,
        )


def test_long_histories_and_odd_values_still_draw(report: dict) -> None:
    from PIL import Image

    windows = []
    for _ in range(5):  # forty daily windows, one with a warning whose PSI is not a number
        for w in report["windows"]:
            day = str((pd.Timestamp("2024-03-01") + pd.Timedelta(days=len(windows))).date())
            windows.append({**w, "window": day, "start": day, "end": day})
    warned = json.loads(json.dumps(windows[4]))
    warned["drift"]["features"][0].update(level="warn", drifted=True, psi=None)
    windows[4] = warned
    drawn = monitoring_plots(
        {"windows": windows, "reference": report["reference"], "alerts": report["alerts"]}
    )
    assert sorted(drawn) == sorted(PLOT_ALTS)
    for uri in drawn.values():
        assert Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).width >= 600
    page = render_monitoring_report({**report, "windows": windows})
    assert page.count("<details") == sum(1 for w in windows if w["drift"])
