"""Request models generated from the data contract stored in the model.

Bad input is a 422 naming the field. A column's ``missing_values`` codes are read as missing
before any rule (the contract's :func:`~keel.contracts.validate.is_missing_code`, as in
training), so a request holding 96 for "unknown" scores exactly as one holding null.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from keel.contracts.validate import is_missing_code

_TYPES: dict[str, Any] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "datetime": dt.datetime,
}
_INT64 = (
    -(2**63),
    2**63 - 1,
)  # an integer column is int64: nothing outside it was ever trained on, or can be logged


def record_model(contract: dict[str, dict[str, Any]], name: str = "Record") -> type[BaseModel]:
    """A strict pydantic model with one field per input column.

    Each field has its column's type, bounds, allowed values and nullability.
    """
    fields: dict[str, Any] = {}
    for column, rule in contract.items():
        kind = _TYPES[rule["dtype"]]
        if rule.get("allowed"):
            kind = Literal[tuple(rule["allowed"])]
        if rule.get("nullable"):
            kind = kind | None
        low, high = rule.get("min"), rule.get("max")
        if rule["dtype"] == "int":
            low, high = (
                max(_INT64[0], _INT64[0] if low is None else low),
                min(_INT64[1], _INT64[1] if high is None else high),
            )
        constraints = {"ge": low, "le": high, "description": rule.get("description")}
        default = None if rule.get("nullable") else ...
        fields[column] = (
            kind,
            Field(default, **{k: v for k, v in constraints.items() if v is not None}),
        )
    config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
    validators = {
        f"read_missing_{i}": field_validator(column, mode="before")(
            _missing_reader(rule["dtype"], rule["missing_values"])
        )
        for i, (column, rule) in enumerate(contract.items())
        if rule.get("missing_values")
    }
    return create_model(name, __config__=config, __validators__=validators, **fields)


def _missing_reader(dtype: str, codes: list[Any]) -> Any:
    """A before-validator reading the column's ``missing_values`` codes as None."""

    def read(cls: type[BaseModel], value: Any) -> Any:
        return None if is_missing_code(value, dtype, codes) else value

    return classmethod(read)


def request_contract(metadata: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What a request brings: the model's inputs.

    With online features, it brings the raw columns they are computed from.
    """
    contract = metadata.get("contract") or {}
    described = metadata.get("features")
    if not described:
        return contract
    computed = {f["name"] for f in described["windows"]} | set(described["calendar"])
    return {**described["inputs"], **{c: rule for c, rule in contract.items() if c not in computed}}


def labels_model(described: dict[str, Any], max_records: int) -> type[BaseModel]:
    """A ``POST /v1/labels`` request: per event its id, its entities and the labels that arrived."""
    inputs = described["inputs"]
    keys = [described["id_column"], *dict.fromkeys(f["entity"] for f in described["windows"])]
    label = record_model(
        {**{k: {**inputs[k], "nullable": False} for k in keys}, **described["labels"]}, "Label"
    )
    return create_model(
        "Labels",
        __config__=ConfigDict(extra="forbid"),
        labels=(list[label], Field(..., min_length=1, max_length=max_records)),  # type: ignore[valid-type]
    )


def batch_model(record: type[BaseModel], max_records: int) -> type[BaseModel]:
    """A request holding up to ``max_records`` records."""
    return create_model(
        "Batch",
        __config__=ConfigDict(extra="forbid"),
        records=(list[record], Field(..., min_length=1, max_length=max_records)),  # type: ignore[valid-type]
    )


class ReasonAnswer(BaseModel):
    """One adverse-action reason."""

    feature: str
    text: str
    contribution: float = Field(
        description="What the feature added to the log-odds of the adverse outcome"
    )
    value: Any = Field(description="The applicant's value of the feature, as a person reads it")


class Decision(BaseModel):
    """The model's answer for one record."""

    probability: float = Field(ge=0, le=1, description="Probability of the adverse outcome")
    decision: Literal["adverse", "favourable"] = Field(description="At the model's threshold")
    reasons: list[ReasonAnswer] = Field(description="Top-k reasons, largest contribution first")
    model: str
    version: int


class ScoreAnswer(Decision):
    """The answer to ``POST /v1/score``."""

    request_id: str = Field(description="Key of the request's rows in the prediction log")


class BatchAnswer(BaseModel):
    """The answer to ``POST /v1/score/batch``: one result per record, in order, from one version."""

    request_id: str
    results: list[Decision]
