"""Fuzzing the API with any JSON and bytes: never a 5xx, and every refusal names what was wrong."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keel.serving.app import create_app
from keel.serving.served import ServedModel
from keel.spec import parse_spec
from keel.training.trainer import train_model

from factories import loans_spec, make_loans

FIELDS = ["income", "debt", "late_payments", "region"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
records = st.dictionaries(
    st.sampled_from([*FIELDS, "gender", "extra"]) | st.text(max_size=8), json_values, max_size=6
)
plausible = st.fixed_dictionaries(
    {
        "income": st.integers(-5, 10**7) | st.floats(),
        "debt": st.integers(0, 10**7),
        "late_payments": st.integers(-3, 40),
        "region": st.sampled_from(["north", "south", "east", "west", "mars"]),
    }
)


@pytest.fixture(scope="module")
def client() -> TestClient:
    raw = loans_spec("unused.csv", tuning={"trials": 2}, models={"families": ["lightgbm"]})
    engine = ServedModel(
        train_model(make_loans(rows=800, seed=2), parse_spec(raw)).model, "loans", 1
    )
    return TestClient(create_app(engine, max_batch=5, max_body_bytes=4000))


def _check(answer: object) -> None:
    assert answer.status_code in (200, 400, 413, 422), answer.text
    if answer.status_code == 400:  # bytes that are not UTF-8 JSON at all
        assert "parsing the body" in answer.json()["detail"]
    if answer.status_code == 422:
        problems = answer.json()["detail"]
        assert problems and all(p["loc"] and p["msg"] for p in problems)
    if answer.status_code == 200:
        body = answer.json()
        for result in body.get("results", [body]):
            assert 0.0 <= result["probability"] <= 1.0 and result["decision"] in (
                "adverse",
                "favourable",
            )


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=records | plausible)
def test_any_json_record_gets_an_answer_or_a_named_refusal(client: TestClient, body: dict) -> None:
    _check(
        client.post(
            "/v1/score", content=json.dumps(body), headers={"content-type": "application/json"}
        )
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(records | plausible, max_size=7) | json_values)
def test_any_batch_gets_an_answer_or_a_named_refusal(client: TestClient, batch: object) -> None:
    body = {"records": batch} if isinstance(batch, list) else batch
    _check(
        client.post(
            "/v1/score/batch",
            content=json.dumps(body),
            headers={"content-type": "application/json"},
        )
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=300))
def test_bytes_that_are_not_json_are_refused_without_a_server_error(
    client: TestClient, raw: bytes
) -> None:
    _check(client.post("/v1/score", content=raw, headers={"content-type": "application/json"}))
