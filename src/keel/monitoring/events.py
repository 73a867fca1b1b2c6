"""Scored events for monitoring: the log's answers (or a scored table), labels joined on arrival.

An *events* frame has one row per scored record: ``time`` (when the event happened: the
record's own time column when it has one, else when it was scored), ``probability``,
``version``, the model's inputs, and ``label`` (missing until it arrives) with
``label_time`` (when it arrived, when known). Labels come from the log's ``labels`` table
(``POST /v1/labels``) or from a file, joined by the record's id column, or by the log's
``request_id`` (and ``row``, for a batch request's records) when the inputs carry no id.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from keel.errors import DataError
from keel.io.tables import TableFormat, read_table, table_format
from keel.io.times import naive_utc

EVENT_COLUMNS = ("time", "probability", "version", "label", "label_time", "request_id", "row")
REQUEST_ID = "request_id"
# A label time not known (yet). Typed Any because pandas-stubs' DataFrame.assign leaves NaT
# out of the values it takes (IntoColumn), while pandas fills the column with it.
_NO_TIME: Any = pd.NaT


def events_from_answers(
    answers: list[dict[str, Any]], *, model: str, where: str, time_column: str | None = None
) -> pd.DataFrame:
    """Events from the prediction log's answered rows, inputs expanded into columns.

    The rows come from :func:`keel.serving.predictions.read_answers`, in the log's order;
    ``where`` names the log in errors.
    """
    if not answers:
        raise DataError(f"the prediction log {where} holds no answers of model '{model}'")
    rows = pd.DataFrame(answers)
    inputs = pd.DataFrame(list(rows.pop("inputs")))
    own_time = [] if time_column is None else [time_column]
    _no_clash(inputs.columns.drop(own_time, errors="ignore"), EVENT_COLUMNS, where)
    served = naive_utc(rows["time"])
    when = naive_utc(inputs.pop(time_column)) if time_column and time_column in inputs else served
    events = pd.concat([inputs, rows[["request_id", "row", "probability", "version"]]], axis=1)
    return events.assign(time=when.to_numpy(), label=float("nan"), label_time=_NO_TIME)


def events_from_table(url: str, *, time_column: str) -> pd.DataFrame:
    """Scored rows from a file (``keel score`` output with the inputs kept).

    ``probability`` and ``time_column`` are needed.
    """
    frame = read_table(url, _format(url)).frame
    missing = [c for c in ("probability", time_column) if c not in frame.columns]
    if missing:
        raise DataError(
            f"{url}: monitoring needs the column(s) {missing}; it has {list(frame.columns)}"
        )
    _no_clash(
        frame.columns.drop(time_column), ("time", "label", "label_time", "request_id", "row"), url
    )
    return frame.assign(
        time=naive_utc(frame[time_column]).to_numpy(),
        label=float("nan"),
        label_time=_NO_TIME,
        version=frame.get("version", 0),
    )


def labels_from_posts(posted: list[dict[str, Any]], *, id_column: str, target: str) -> pd.DataFrame:
    """Labels posted to the server: id, label and arrival time, the latest per id.

    They come from :func:`keel.serving.predictions.read_labels`.
    """
    return pd.DataFrame(
        {
            id_column: [p["labels"][id_column] for p in posted],
            "label": [p["labels"].get(target) for p in posted],
            "label_time": naive_utc([p["time"] for p in posted]),
        }
    ).drop_duplicates(id_column, keep="last")


def labels_from_table(
    url: str, *, id_column: str, target: str, time_column: str | None = None
) -> pd.DataFrame:
    """Labels from a file: the id column (or ``request_id`` and ``row``), the target and its time.

    The time column says when each label became known.
    """
    frame = read_table(url, _format(url)).frame
    missing = [c for c in (id_column, target, time_column) if c and c not in frame.columns]
    if missing:
        raise DataError(f"{url}: labels need the column(s) {missing}; it has {list(frame.columns)}")
    keys = [id_column, *(["row"] if id_column == REQUEST_ID and "row" in frame.columns else [])]
    when = naive_utc(frame[time_column]).to_numpy() if time_column else _NO_TIME
    return (
        frame[keys].assign(label=frame[target], label_time=when).drop_duplicates(keys, keep="last")
    )


def attach_labels(
    events: pd.DataFrame, labels: pd.DataFrame, *, id_column: str, positive: object = 1
) -> pd.DataFrame:
    """``events`` with each label and its arrival time, joined by ``id_column``.

    A label is 1 for ``positive``, else 0. With ``id_column="request_id"`` a label may also
    name the ``row`` of a batch request (0 when absent).
    """
    if id_column not in events.columns:
        raise DataError(
            f"labels are joined by '{id_column}', which the scored events do not hold; "
            f"they have {[c for c in events.columns if c not in EVENT_COLUMNS]}"
        )
    keys = [id_column]
    if id_column == REQUEST_ID:
        labels = labels.assign(row=labels["row"].astype("int64") if "row" in labels else 0)
        keys.append("row")
    as_text = {
        k: lambda f, k=k: f[k].astype(str) for k in keys[:1]
    }  # ids read as 7 or "7" join alike
    found = (
        events[keys]
        .assign(**as_text)
        .merge(labels.assign(**as_text), on=keys, how="left", validate="many_to_one")
    )
    known = found["label"].notna()
    label = (found["label"] == positive).astype("float64").where(known)
    return events.assign(label=label.to_numpy(), label_time=found["label_time"].to_numpy())


def _format(url: str) -> TableFormat:
    """The table's format from its name; a scored table or labels file must say it in its suffix."""
    found = table_format(url)
    if found is None:
        raise DataError(
            f"{url}: cannot tell the format from the name; give a .csv or .parquet file"
        )
    return found


def _no_clash(columns: pd.Index, reserved: tuple[str, ...], where: str) -> None:
    """Refuse inputs named like the columns monitoring adds: they would be overwritten silently."""
    clash = sorted(set(columns) & set(reserved))
    if clash:
        raise DataError(
            f"{where}: the input column(s) {clash} have names monitoring gives its own columns "
            f"({', '.join(reserved)}); rename them in the data contract to monitor this model"
        )
