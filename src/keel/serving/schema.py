"""Request models generated from the data contract stored in the model, so bad input is a 422 naming the field."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model

_TYPES: dict[str, Any] = {"int": int, "float": float, "str": str, "bool": bool, "datetime": dt.datetime}


def record_model(contract: dict[str, dict[str, Any]], name: str = "Record") -> type[BaseModel]:
    """A strict pydantic model with one field per input column: its type, bounds, allowed values, nullability."""
    fields: dict[str, Any] = {}
    for column, rule in contract.items():
        kind = _TYPES[rule["dtype"]]
        if rule.get("allowed"):
            kind = Literal[tuple(rule["allowed"])]
        if rule.get("nullable"):
            kind = Optional[kind]
        constraints = {"ge": rule.get("min"), "le": rule.get("max"), "description": rule.get("description")}
        default = None if rule.get("nullable") else ...
        fields[column] = (kind, Field(default, **{k: v for k, v in constraints.items() if v is not None}))
    config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
    return create_model(name, __config__=config, **fields)


def batch_model(record: type[BaseModel], max_records: int) -> type[BaseModel]:
    """A request holding up to ``max_records`` records."""
    return create_model(
        "Batch", __config__=ConfigDict(extra="forbid"),
        records=(list[record], Field(..., min_length=1, max_length=max_records)),  # type: ignore[valid-type]
    )
