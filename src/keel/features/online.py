"""Online features: the offline definitions computed for one new row from per-entity state.

For each row, :meth:`OnlineFeatures.compute` reads the entity's kept events and applies
the same window rule as the SQL kernel (:mod:`keel.features.windows`); :meth:`record`
then keeps the row as an event, and :meth:`update` stores a label when it arrives. Rows
are expected in time order, as a stream delivers them; a replay test holds every value
equal to the offline one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

import pandas as pd

from keel.errors import DataError
from keel.features.stores import Event, EventStore, MemoryStore, as_json_values
from keel.features.windows import FeaturePlan, calendar_value
from keel.spec import ProjectSpec, WindowFeature

_NAN = float("nan")


def time_us(value: Any) -> int:
    """A time as whole microseconds since the epoch, floored, like the kernel's ``epoch_us``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise DataError(f"a time must be a date-time (text or timestamp), got the number {value!r}")
    stamp = pd.Timestamp(value)
    # pandas-stubs say a Timestamp; a missing value gives NaT, which is not one.
    if not isinstance(stamp, pd.Timestamp):
        raise DataError("the row has no time; window features need one")
    return stamp.value // 1000


def _required(column: str | None, setting: str) -> str:
    """A column the plan's features need; the spec's checks see that it is set."""
    if column is None:
        raise DataError(f"online window and calendar features need {setting}")
    return column


def _present(values: Sequence[Any]) -> list[Any]:
    return [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]


def _sum(values: list[float]) -> float:
    total = 0.0
    for v in values:
        total += v
    return total


def _std(values: list[float]) -> float:
    if len(values) < 2:
        return _NAN
    mean = _sum(values) / len(values)
    return math.sqrt(_sum([(v - mean) ** 2 for v in values]) / (len(values) - 1))


_AGGREGATES: dict[str, Callable[[list[Any]], float]] = {
    "sum": lambda v: _sum(v) if v else _NAN,
    "mean": lambda v: _sum(v) / len(v) if v else _NAN,
    "std": _std,
    "min": lambda v: float(min(v)) if v else _NAN,
    "max": lambda v: float(max(v)) if v else _NAN,
    "distinct_count": lambda v: float(len(set(v))),
}


class _Entity:
    """The features partitioned on one entity column and the event values they read."""

    def __init__(self, entity: str, features: list[WindowFeature]) -> None:
        self.entity = entity
        self.features = features
        self.columns = list(dict.fromkeys(f.column for f in features if f.column is not None))
        self.horizon_us = max(f.delay_us + f.window_us for f in features)
        self.index = {
            f.name: self.columns.index(f.column) for f in features if f.column is not None
        }

    def values(self, row: Mapping[str, Any]) -> list[Any]:
        return as_json_values([row.get(c) for c in self.columns])

    def compute(
        self, events: list[tuple[int, str, list[Any]]], now: int, own: list[Any]
    ) -> dict[str, float]:
        out = {}
        for f in self.features:
            cutoff = now - f.delay_us
            start = cutoff - f.window_us
            with_self = f.boundary == "at_or_before" and f.delay_us == 0
            if f.boundary == "before" or with_self:
                chosen = [e[2] for e in events if start < e[0] < cutoff]
            else:
                chosen = [e[2] for e in events if start < e[0] <= cutoff]
            if with_self:
                chosen.append(own)
            if f.column is None:
                out[f.name] = float(len(chosen))
                continue
            index = self.index[f.name]
            values = _present([v[index] for v in chosen])
            out[f.name] = (
                float(len(values)) if f.function == "count" else _AGGREGATES[f.function](values)
            )
        return out


def serving_features(spec: ProjectSpec) -> dict[str, Any] | None:
    """What a served model needs to compute its features online; None without any.

    It is kept in the model's metadata.

    ``inputs`` are the raw columns a request brings besides the model's own (the id, the time,
    the entities and the aggregated columns, with their contract rules); ``labels`` is the
    target, known only later: :meth:`OnlineFeatures.update` stores it where windows read it,
    and monitoring reads it from the log either way.
    """
    plan = FeaturePlan.of(spec)
    if not plan.names():
        return None
    aggregated = [f.column for f in plan.windows if f.column is not None]
    labels = (
        [spec.target.column] if plan.windows else []
    )  # read by windows, or only logged for monitoring
    raw = [
        spec.data.id_column if plan.windows else None,
        spec.data.time_column,
        *(f.entity for f in plan.windows),
        *aggregated,
    ]
    rules = {
        c: spec.contract.columns[c].model_dump(exclude_none=True)
        for c in dict.fromkeys([*raw, *labels])
        if c is not None
    }
    return {
        "windows": [asdict(f) for f in plan.windows],
        "calendar": dict(plan.calendar),
        "id_column": spec.data.id_column,
        "time_column": spec.data.time_column,
        "inputs": {c: rule for c, rule in rules.items() if c not in labels},
        "labels": {c: rules[c] for c in labels},
    }


class OnlineFeatures:
    """A plan's window and calendar features for one row at a time, from an event store."""

    def __init__(
        self,
        plan: FeaturePlan,
        *,
        id_column: str | None,
        time_column: str | None,
        store: EventStore | None = None,
    ) -> None:
        if plan.windows and not id_column:
            raise DataError(
                "online window features need data.id_column, "
                "to find an event when its label arrives"
            )
        self.plan = plan
        self.store = store if store is not None else MemoryStore()
        self.id_column = id_column
        self.time_column = time_column
        self._entities = [_Entity(entity, features) for entity, features in plan.groups().items()]
        self._names = plan.names()
        self._keys = {entity.entity for entity in self._entities}

    @classmethod
    def of(cls, spec: ProjectSpec, store: EventStore | None = None) -> OnlineFeatures:
        """The spec's features."""
        return cls(
            FeaturePlan.of(spec),
            id_column=spec.data.id_column,
            time_column=spec.data.time_column,
            store=store,
        )

    @classmethod
    def of_model(
        cls, described: Mapping[str, Any], store: EventStore | None = None
    ) -> OnlineFeatures:
        """The features a model was trained with, from its metadata (:func:`serving_features`)."""
        return cls(
            FeaturePlan.of_model(described),
            id_column=described["id_column"],
            time_column=described["time_column"],
            store=store,
        )

    def compute(
        self, row: Mapping[str, Any], pending: Mapping[tuple[str, Any], list[Event]] | None = None
    ) -> dict[str, float]:
        """Every computed feature of ``row``, from the events kept before it (nothing is stored).

        ``pending`` holds events not kept yet, by (entity, value): a request's earlier records.
        """
        if not self._names:
            return {}
        time_column = _required(self.time_column, "data.time_column")
        now = time_us(row.get(time_column))
        out: dict[str, float] = {}
        for entity in self._entities:
            key = self._key(row, entity.entity)
            start = now - entity.horizon_us
            events = self.store.events(entity.entity, key, start, now)
            held = pending.get((entity.entity, key)) if pending else None
            if held:
                events = sorted(
                    events + [e for e in held if start < e[0] <= now], key=lambda e: e[0]
                )
            out.update(entity.compute(events, now, entity.values(row)))
        for name, part in self.plan.calendar.items():
            out[name] = calendar_value(row[time_column], part)
        return {name: out[name] for name in self._names}

    def compute_batch(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
        """:meth:`compute` for each row in order, each seeing the rows before it.

        Nothing is stored.
        """
        pending: dict[tuple[str, Any], list[Event]] = {}
        out = []
        for row in rows:
            out.append(self.compute(row, pending))
            for entity, key, event in self._events(row):
                pending.setdefault((entity.entity, key), []).append(event)
        return out

    def _events(self, row: Mapping[str, Any]) -> list[tuple[_Entity, Any, Event]]:
        """The event ``row`` is for each of its entities.

        Each is (entity, its value, (time, id, values)).
        """
        if not self._entities:
            return []
        now = time_us(row.get(_required(self.time_column, "data.time_column")))
        event_id = str(row[_required(self.id_column, "data.id_column")])
        return [
            (entity, self._key(row, entity.entity), (now, event_id, entity.values(row)))
            for entity in self._entities
        ]

    def record(self, row: Mapping[str, Any]) -> None:
        """Keep ``row`` as an event of each of its entities (after it was scored)."""
        for entity, key, event in self._events(row):
            self.store.add(
                entity.entity,
                key,
                event,
                forget_until_us=event[0] - entity.horizon_us,
                idle_ms=2 * entity.horizon_us // 1000,
            )

    def record_all(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """:meth:`record` each row, in order."""
        for row in rows:
            self.record(row)

    def update(self, row: Mapping[str, Any]) -> int:
        """Store late values of a recorded row (a label that arrived).

        Returns how many entities held it. ``row`` holds the id, the entity columns and the
        values that arrived; only those values change (the id and entities identify the
        event), in the entities whose features read them.
        """
        event_id = str(row[_required(self.id_column, "data.id_column")])
        arrived = [c for c in row if c != self.id_column and c not in self._keys]
        found = 0
        for entity in self._entities:
            positions = [i for i, c in enumerate(entity.columns) if c in arrived]
            changes = dict(
                zip(
                    positions,
                    as_json_values([row[entity.columns[i]] for i in positions]),
                    strict=True,
                )
            )
            if changes:
                found += self.store.update(
                    entity.entity, self._key(row, entity.entity), event_id, changes
                )
        return found

    def label_groups(self, columns: Sequence[str]) -> int:
        """How many entities read any of ``columns``.

        That is what :meth:`update` returns for a kept event.
        """
        return sum(any(c in entity.columns for c in columns) for entity in self._entities)

    def compute_and_record(self, row: Mapping[str, Any]) -> dict[str, float]:
        """:meth:`compute` then :meth:`record`: what a scoring service does per transaction."""
        values = self.compute(row)
        self.record(row)
        return values

    @staticmethod
    def _key(row: Mapping[str, Any], entity: str) -> Any:
        key = row.get(entity)
        if key is None:
            raise DataError(f"the row has no value for the entity column '{entity}'")
        return key.item() if hasattr(key, "item") else key
