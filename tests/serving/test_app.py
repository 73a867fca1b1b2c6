"""The scoring API: the model's own numbers and reasons, the contract as the request schema.

And the API's limits.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from keel.explain.contributions import Explainer
from keel.explain.reasons import top_reasons
from keel.serving.app import create_app
from keel.serving.served import ServedModel
from keel.spec import parse_spec
from keel.training.trainer import train_model

from factories import loans_spec, make_loans

INPUTS = ["income", "debt", "late_payments", "region"]


@pytest.fixture(scope="module", params=["lightgbm", "logistic"])
def engine(request: pytest.FixtureRequest) -> ServedModel:
    raw = loans_spec(
        "unused.csv",
        tuning={"trials": 2},
        models={"families": [request.param]},
        reasons={"texts": {"late_payments": "Late payments on record"}, "top_k": 3},
    )
    return ServedModel(
        train_model(make_loans(rows=1500, seed=2), parse_spec(raw)).model, "loans", 3
    )


@pytest.fixture(scope="module")
def client(engine: ServedModel) -> TestClient:
    return TestClient(create_app(engine, max_batch=50, max_body_bytes=20_000))


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return make_loans(rows=40, seed=9)


def _record(row: pd.Series) -> dict:
    """A JSON record as a client sends it (the contract's int columns as JSON integers)."""
    return {
        "income": int(row["income"]),
        "debt": int(row["debt"]),
        "late_payments": int(row["late_payments"]),
        "region": str(row["region"]),
    }


def test_one_record_gets_the_models_probability_decision_and_reasons(
    client: TestClient, engine: ServedModel, rows: pd.DataFrame
) -> None:
    model = engine.model
    X = model.preprocessor.transform(rows)
    expected_p = model.predict_proba(rows)
    expected_reasons = top_reasons(Explainer(model).explain_matrix(X), X, model)

    for i in range(len(rows)):
        answer = client.post("/v1/score", json=_record(rows.iloc[i]))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["probability"] == expected_p[i]
        assert body["decision"] == ("adverse" if expected_p[i] >= model.threshold else "favourable")
        assert body["reasons"] == [r.to_dict() for r in expected_reasons[i]]
        assert (body["model"], body["version"]) == ("loans", 3) and len(body["request_id"]) == 32


def test_batch_single_and_table_scoring_agree_exactly(
    client: TestClient, engine: ServedModel, rows: pd.DataFrame
) -> None:
    records = [_record(rows.iloc[i]) for i in range(len(rows))]

    batch = client.post("/v1/score/batch", json={"records": records}).json()["results"]
    single = [client.post("/v1/score", json=r).json() for r in records]

    assert (
        [{k: v for k, v in s.items() if k != "request_id"} for s in single]
        == batch
        == engine.score_frame(rows)
    )


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"income": "a lot"}, "income", "valid integer"),
        ({"late_payments": 99}, "late_payments", "less than or equal to 30"),
        ({"region": "mars"}, "region", "'north', 'south', 'east' or 'west'"),
        ({"debt": None}, "debt", "valid integer"),
        ({"favourite_colour": "red"}, "favourite_colour", "Extra inputs are not permitted"),
    ],
)
def test_bad_input_is_a_422_naming_the_field_and_the_rule(
    client: TestClient, rows: pd.DataFrame, change: dict, field: str, words: str
) -> None:
    answer = client.post("/v1/score", json={**_record(rows.iloc[0]), **change})

    assert answer.status_code == 422
    [problem] = answer.json()["detail"]
    assert problem["loc"][-1] == field and words in problem["msg"]


def test_missing_fields_and_non_finite_numbers_are_refused(
    client: TestClient, rows: pd.DataFrame
) -> None:
    record = _record(rows.iloc[0])
    missing = client.post("/v1/score", json={k: v for k, v in record.items() if k != "income"})
    body = json.dumps({**record, "income": 1}).replace('"income": 1', '"income": NaN')
    not_finite = client.post(
        "/v1/score", content=body, headers={"content-type": "application/json"}
    )

    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"][-1] == "income"
    assert not_finite.status_code == 422 and not_finite.json()["detail"][0]["loc"][-1] == "income"


def test_limits_too_many_records_is_422_and_a_large_body_is_413(
    client: TestClient, rows: pd.DataFrame
) -> None:
    record = _record(rows.iloc[0])
    many = client.post("/v1/score/batch", json={"records": [record] * 51})
    huge = client.post(
        "/v1/score",
        content=b"{" + b" " * 30_000 + b"}",
        headers={"content-type": "application/json"},
    )

    assert many.status_code == 422 and "at most 50 items" in many.json()["detail"][0]["msg"]
    assert huge.status_code == 413 and "20000 bytes" in huge.json()["detail"]


def test_probes_and_the_openapi_schema_come_from_the_contract(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]["Record"]

    assert client.get("/livez").json() == {"status": "alive"}
    assert client.get("/readyz").json() == {"status": "ready", "model": "loans", "version": 3}
    assert sorted(schema["required"]) == sorted(INPUTS)
    assert schema["properties"]["late_payments"]["maximum"] == 30
    assert schema["properties"]["region"]["enum"] == ["north", "south", "east", "west"]
    assert "gender" not in schema["properties"]  # protected: never asked for


def test_readyz_is_503_while_draining(engine: ServedModel) -> None:
    app = create_app(engine)
    app.state.ready = False
    assert TestClient(app).get("/readyz").status_code == 503


def test_swapping_the_engine_serves_the_new_version(
    engine: ServedModel, rows: pd.DataFrame
) -> None:
    app = create_app(engine)
    client = TestClient(app)
    newer = ServedModel(engine.model, "loans", 4)

    before = client.post("/v1/score", json=_record(rows.iloc[0])).json()
    app.state.engine = newer
    after = client.post("/v1/score", json=_record(rows.iloc[0])).json()

    assert (before["version"], after["version"]) == (3, 4)
    assert np.isclose(before["probability"], after["probability"])


def test_admin_reload_needs_the_api_key(engine: ServedModel) -> None:
    client = TestClient(create_app(engine, reload=lambda: engine, api_key="s3cret"))
    keyless = TestClient(create_app(engine, reload=lambda: engine))

    assert client.post("/admin/reload").status_code == 401
    assert client.post("/admin/reload", headers={"x-api-key": "guess"}).status_code == 403
    assert keyless.post("/admin/reload", headers={"x-api-key": ""}).status_code == 401
    assert keyless.post("/admin/reload", headers={"x-api-key": "anything"}).status_code == 403
    assert client.post("/admin/reload", headers={"x-api-key": "s3cret"}).json() == {
        "previous": 3,
        "serving": 3,
    }


def test_a_failed_reload_keeps_the_old_model_serving(
    engine: ServedModel, rows: pd.DataFrame
) -> None:
    from keel.errors import IntegrityError

    outcomes: list[object] = [
        ServedModel(engine.model, "loans", 4),
        IntegrityError("sha256 does not match"),
    ]

    def reload() -> ServedModel:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    client = TestClient(create_app(engine, reload=reload, api_key="k"))
    swapped = client.post("/admin/reload", headers={"x-api-key": "k"})
    refused = client.post("/admin/reload", headers={"x-api-key": "k"})
    answer = client.post("/v1/score", json=_record(rows.iloc[0]))

    assert swapped.json() == {"previous": 3, "serving": 4}
    assert (
        refused.status_code == 409
        and "still serving version 4: sha256 does not match" in refused.json()["detail"]
    )
    assert answer.status_code == 200 and answer.json()["version"] == 4


def test_metrics_count_requests_scores_and_the_version(
    engine: ServedModel, rows: pd.DataFrame
) -> None:
    client = TestClient(create_app(engine))
    for i in range(3):
        client.post("/v1/score", json=_record(rows.iloc[i]))
    client.post("/v1/score", json={})

    text = client.get("/metrics").text

    assert 'keel_requests_total{route="/v1/score",status="200"} 3.0' in text
    assert 'keel_requests_total{route="/v1/score",status="422"} 1.0' in text
    assert "keel_score_count 3.0" in text and 'keel_model_version{model="loans"} 3.0' in text


def test_hosts_outside_the_allow_list_are_refused(engine: ServedModel) -> None:
    client = TestClient(create_app(engine, allowed_hosts=["scoring.bank.internal"]))

    assert client.get("/livez", headers={"host": "evil.example"}).status_code == 400
    assert client.get("/livez", headers={"host": "scoring.bank.internal"}).status_code == 200


SERVE_PUBLIC = {
    "/v1/score",
    "/v1/score/batch",
    "/livez",
    "/readyz",
    "/metrics",
    "/docs",
    "/docs/oauth2-redirect",
    "/openapi.json",
    "/redoc",
    "/static/swagger-ui",
}


def test_every_keel_serve_route_is_public_by_name_or_needs_the_api_key(
    engine: ServedModel,
) -> None:
    app = create_app(engine, reload=lambda: engine, api_key="s3cret")
    client = TestClient(app)
    routes = {
        (method, r.path) for r in app.routes if hasattr(r, "methods") for method in r.methods or ()
    }
    keyed = {(m, p) for m, p in routes if p not in SERVE_PUBLIC and m != "HEAD"}
    assert keyed == {("POST", "/admin/reload"), ("POST", "/admin/shadow")}
    for method, path in keyed:
        assert client.request(method, path, json={"enabled": True}).status_code == 401
        assert (
            client.request(
                method, path, json={"enabled": True}, headers={"X-API-Key": "wrong"}
            ).status_code
            == 403
        )
