"""A monitoring pass over scored events.

Windows, drift, the label delay, performance and fairness alerts, webhooks.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from keel.errors import DataError, SpecError
from keel.lifecycle.alerts import alert_lines, send_webhook
from keel.models.artifact import KeelModel
from keel.monitoring.events import attach_labels, events_from_answers, labels_from_posts
from keel.monitoring.monitor import monitor
from keel.serving.predictions import PredictionLog, read_answers, read_labels
from keel.spec import AlertsSpec, FairnessSpec, MonitoringSpec, parse_spec
from keel.training.trainer import train_model

from factories import loans_spec, make_loans

START = pd.Timestamp("2026-01-05")  # a Monday: weekly windows start on Mondays
ROWS_PER_WEEK = 600


@pytest.fixture(scope="module")
def model() -> KeelModel:
    return train_model(
        make_loans(rows=3000, seed=2), parse_spec(loans_spec("x.csv", tuning={"trials": 2}))
    ).model


def _events(
    model: KeelModel, weeks: int, *, seed: int, shift_from: int | None = None
) -> pd.DataFrame:
    """``weeks`` weeks of scored loans, labelled; from week ``shift_from`` on, incomes 40% lower."""
    frames = []
    for week in range(weeks):
        rows = make_loans(ROWS_PER_WEEK, seed=seed * 100 + week)
        if shift_from is not None and week >= shift_from:
            rows["income"] = (rows["income"] * 0.6).round(0)
        offsets = np.sort(np.random.default_rng(week).integers(0, 7 * 86400, ROWS_PER_WEEK))
        rows["time"] = START + pd.Timedelta(weeks=week) + pd.to_timedelta(offsets, unit="s")
        rows["loan_id"] += week * ROWS_PER_WEEK
        frames.append(rows)
    events = pd.concat(frames, ignore_index=True)
    return events.assign(
        probability=model.predict_proba(events),
        version=1,
        label=events.pop("defaulted").astype(float),
        label_time=pd.NaT,
    )


def _end(weeks: int) -> pd.Timestamp:
    """The moment ``weeks`` whole weeks of events have closed."""
    return START + pd.Timedelta(weeks=weeks)


def test_only_closed_windows_are_judged_and_alerts_are_news_once(model: KeelModel) -> None:
    events = _events(model, 3, seed=7, shift_from=1)
    open_week = monitor(
        events, model, MonitoringSpec(window="week"), name="loans"
    )  # as of the newest event
    assert [w.complete for w in open_week.windows] == [True, True, False]
    assert open_week.windows[2].drift is None and open_week.windows[2].alerts == []
    assert (
        monitor(events, model, MonitoringSpec(window="week"), name="loans", partial=True)
        .windows[2]
        .drift
    )
    report = monitor(events, model, MonitoringSpec(window="week"), name="loans", as_of=_end(3))
    assert {a.window for a in report.alerts} == {w.window for w in report.windows[1:]}
    # A run after the second week's close has seen the first two weeks' alerts; only the third
    # week's are news.
    assert {a.window for a in report.alerts_since(_end(2))} == {report.windows[2].window}
    assert report.alerts_since(_end(3)) == [] and report.alerts_since(None) == report.alerts


def test_a_shift_is_found_in_the_weeks_it_happens_and_nowhere_else(model: KeelModel) -> None:
    report = monitor(
        _events(model, 6, seed=1, shift_from=4),
        model,
        MonitoringSpec(window="week"),
        name="loans",
        as_of=_end(6),
    )
    assert [w.window for w in report.windows] == [
        str((START + pd.Timedelta(weeks=k)).to_period("W-SUN")) for k in range(6)
    ]
    drifted = [sorted(f.name for f in w.drift.features if f.drifted) for w in report.windows]
    assert drifted[:4] == [[]] * 4
    assert all("income" in names for names in drifted[4:])
    assert {a.window for a in report.alerts if a.kind == "drift"} <= {
        w.window for w in report.windows[4:]
    }
    for w in report.windows:
        assert w.rows == ROWS_PER_WEEK and w.estimated.auc is not None and w.realized is not None


def test_labels_count_only_once_known_at_the_as_of_time(model: KeelModel) -> None:
    events = _events(model, 4, seed=2)
    as_of = START + pd.Timedelta(weeks=4)
    delayed = monitor(
        events, model, MonitoringSpec(window="week", label_delay="14d"), name="loans", as_of=as_of
    )
    # Rows at most 14 days old at the as-of time have no label yet: the last two weeks.
    assert [w.labelled for w in delayed.windows] == [ROWS_PER_WEEK, ROWS_PER_WEEK, 0, 0]
    assert [w.realized is None for w in delayed.windows] == [False, False, True, True]
    # A label carrying its arrival time counts from then, whatever the delay says.
    arrived = events.assign(label_time=events["time"] + pd.Timedelta("1d"))
    timed = monitor(
        arrived, model, MonitoringSpec(window="week", label_delay="14d"), name="loans", as_of=as_of
    )
    assert timed.windows[-1].labelled == (arrived["label_time"] <= as_of).sum() - 3 * ROWS_PER_WEEK
    assert timed.windows[-1].labelled < ROWS_PER_WEEK
    # Events after the as-of time are not there yet.
    early = monitor(
        events,
        model,
        MonitoringSpec(window="week"),
        name="loans",
        as_of=START + pd.Timedelta(days=10),
    )
    assert len(early.windows) == 2 and early.windows[1].rows < ROWS_PER_WEEK


def test_a_worse_realized_auc_alerts_while_the_estimate_cannot_see_it(model: KeelModel) -> None:
    """Concept drift: the same inputs and scores, but the outcomes no longer follow them."""
    events = _events(model, 3, seed=3)
    last = events["time"] >= START + pd.Timedelta(weeks=2)
    events.loc[last, "label"] = np.random.default_rng(0).permutation(
        events.loc[last, "label"].to_numpy()
    )
    report = monitor(
        events, model, MonitoringSpec(window="week", max_auc_drop=0.05), name="loans", as_of=_end(3)
    )
    performance = [a for a in report.alerts if a.kind == "performance"]
    assert [a.window for a in performance] == [report.windows[2].window]
    assert performance[0].value < performance[0].threshold
    assert not [a for a in report.alerts if a.kind == "estimate"]


def test_small_windows_are_shown_but_not_judged(model: KeelModel) -> None:
    events = _events(model, 2, seed=4, shift_from=1).iloc[: ROWS_PER_WEEK + 50]
    report = monitor(
        events, model, MonitoringSpec(window="week", min_rows=100), name="loans", as_of=_end(2)
    )
    assert (
        report.windows[1].rows == 50
        and report.windows[1].drift is None
        and report.windows[1].alerts == []
    )


def test_fairness_over_time_alerts_below_the_adverse_impact_ratio(model: KeelModel) -> None:
    events = _events(model, 2, seed=5)
    second = events["time"] >= START + pd.Timedelta(weeks=1)
    events.loc[second, "probability"] = np.where(events.loc[second, "gender"] == "f", 0.9, 0.1)
    report = monitor(
        events,
        model,
        MonitoringSpec(window="week"),
        name="loans",
        protected=["gender"],
        as_of=_end(2),
        fairness=FairnessSpec(min_adverse_impact_ratio=0.8),
    )
    unfair = [a for a in report.alerts if a.kind == "fairness"]
    assert [a.window for a in unfair] == [report.windows[1].window] and unfair[0].value == 0.0
    assert report.windows[0].fairness[0]["adverse_impact_ratio"] > 0.8


def test_events_and_labels_from_the_prediction_log(tmp_path) -> None:
    log = PredictionLog(tmp_path / "predictions.db")
    decision = {
        "probability": 0.25,
        "decision": "favourable",
        "reasons": [],
        "model": "fraud",
        "version": 2,
    }
    times = [
        "2025-12-29T09:00:00",
        "2025-12-30T10:00:00.250000+01:00",
        "2025-12-31T09:00:00.5",
    ]  # as orjson
    for i in range(3):  # writes them: whole seconds without a fraction, offsets or none
        log.append(
            f"r{i}",
            f"2026-01-0{i + 1}T10:00:00{'.000001' if i else ''}+00:00",
            [{"tx_id": i, "tx_time": times[i], "amount": 10.0 * i}],
            [decision],
        )
    log.append_labels(
        "2026-01-10T00:00:00+00:00", "tx_id", [{"tx_id": 1, "fraud": 1}, {"tx_id": 9, "fraud": 0}]
    )
    log.close()
    path = tmp_path / "predictions.db"
    events = events_from_answers(
        read_answers(path, "fraud"), model="fraud", where=str(path), time_column="tx_time"
    )
    assert events["time"].tolist() == [
        pd.Timestamp("2025-12-29 09:00"),
        pd.Timestamp("2025-12-30 09:00:00.25"),
        pd.Timestamp("2025-12-31 09:00:00.5"),
    ]  # naive UTC
    labelled = attach_labels(
        events,
        labels_from_posts(read_labels(path), id_column="tx_id", target="fraud"),
        id_column="tx_id",
    )
    assert labelled["label"].tolist()[1] == 1.0 and labelled["label"].isna().tolist() == [
        True,
        False,
        True,
    ]
    assert labelled["label_time"].iloc[1] == pd.Timestamp("2026-01-10")
    by_request = attach_labels(
        events,
        pd.DataFrame({"request_id": ["r2"], "label": [1], "label_time": [pd.NaT]}),
        id_column="request_id",
    )
    assert by_request["label"].isna().tolist() == [True, True, False]
    clash = PredictionLog(tmp_path / "clash.db")
    clash.append("r", "2026-01-01T10:00:00+00:00", [{"tx_id": 1, "label": 3.0}], [decision])
    clash.close()
    with pytest.raises(DataError, match=r"input column\(s\) \['label'\]"):
        events_from_answers(
            read_answers(tmp_path / "clash.db", "fraud"), model="fraud", where="clash.db"
        )
    with pytest.raises(DataError, match="no answers of model 'credit'"):
        events_from_answers(read_answers(path, "credit"), model="credit", where=str(path))
    with pytest.raises(DataError, match="no prediction log at"):
        read_answers(tmp_path / "missing.db", "fraud")


def test_alerts_go_to_an_allowed_webhook_and_as_json_lines(model: KeelModel, webhook) -> None:
    url, received = webhook
    report = monitor(
        _events(model, 2, seed=6, shift_from=1),
        model,
        MonitoringSpec(window="week"),
        name="loans",
        as_of=_end(2),
    )
    assert report.alerts
    settings = AlertsSpec(webhook=url, allowed_hosts=["127.0.0.1"])
    assert send_webhook(report.alerts, settings, model="loans", as_of=report.as_of) is None
    assert received == [
        {"model": "loans", "as_of": report.as_of, "alerts": [a.to_dict() for a in report.alerts]}
    ]
    lines = [
        json.loads(line) for line in alert_lines(report.alerts, model="loans", as_of=report.as_of)
    ]
    assert lines[0]["model"] == "loans" and lines[0]["kind"] == report.alerts[0].kind
    gone = AlertsSpec(
        webhook="http://127.0.0.1:9/alerts", allowed_hosts=["127.0.0.1"], timeout_seconds=1
    )
    assert "could not be reached" in send_webhook(
        report.alerts, gone, model="loans", as_of=report.as_of
    )
    with pytest.raises(SpecError, match="not in alerts.allowed_hosts"):
        parse_spec(
            {**loans_spec("x.csv"), "monitoring": {"alerts": {"webhook": "https://evil.example/x"}}}
        )
