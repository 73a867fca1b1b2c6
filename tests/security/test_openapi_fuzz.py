"""schemathesis over the OpenAPI documents of `keel serve` and the governance service: no 5xx.

Every operation of each document gets generated requests, valid and invalid by its schema,
bounded in number; an answer of 500 or above fails. The scoring app logs to a real prediction
log and takes the admin key; the governance service is called with the token of a user who
holds each route's permission, so requests reach the rules rather than stopping at 401.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from keel.server.api import create_governance_app
from keel.server.routes import ROUTES
from keel.serving.app import create_app
from keel.serving.predictions import PredictionLog

from factories import small_engine
from people import enrol

EXAMPLES = settings(
    max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
HOLDER = {
    "users": "root",
    "approve": "vera",
    "reject": "vera",
    "policy": "vera",
    "promote": "dan",
    "rollback": "dan",
    "register": "ana",
    "read": "ana",
}  # who calls each permission's routes


@pytest.fixture(scope="module")
def scoring_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    log = PredictionLog(tmp_path_factory.mktemp("fuzz") / "predictions.db")
    engine = small_engine()
    yield create_app(engine, max_batch=20, api_key="k", prediction_log=log, reload=lambda: engine)
    log.close()


@pytest.fixture(scope="module")
def governance_app(tmp_path_factory: pytest.TempPathFactory) -> object:
    people = enrol(tmp_path_factory.mktemp("fuzz-governance") / ".keel")
    app = create_governance_app(people.service)
    app.state.fuzz_tokens = people.tokens
    return app


def _fuzz(app: object, headers: Callable[[str, str], dict[str, str]]) -> Counter[int]:
    """Call every operation of ``app``'s OpenAPI document with generated requests.

    The requests are valid and invalid by its schema. Returns how often each status was answered;
    a status of 500 or above fails at once.
    """
    statuses: Counter[int] = Counter()
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @EXAMPLES
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case: schemathesis.Case) -> None:
                response = case.call(headers=headers(case.method, case.path))
                statuses[response.status_code] += 1
                assert response.status_code < 500, (
                    case.method,
                    case.formatted_path,
                    case.body,
                    response.text,
                )

            try:
                call()
            except Unsatisfiable:
                if mode is GenerationMode.POSITIVE:
                    raise
                # nothing can break this operation's schema (no input, or a string header only)
    return statuses


def test_keel_serve_never_answers_a_server_error(scoring_app: object) -> None:
    statuses = _fuzz(
        scoring_app,
        lambda _, path: {"x-api-key": "k"} if path.startswith(("/admin", "/v1/labels")) else {},
    )
    print(
        f"keel serve: {sum(statuses.values())} requests, statuses {dict(sorted(statuses.items()))}"
    )
    assert statuses[200] and statuses[422]  # valid requests were answered, invalid ones refused


def test_the_governance_service_never_answers_a_server_error(governance_app: object) -> None:
    tokens = governance_app.state.fuzz_tokens  # type: ignore[attr-defined]

    def headers(method: str, path: str) -> dict[str, str]:
        route = next(r for r in ROUTES if r.path == path and r.method == method)
        holder = HOLDER.get(route.permission)
        return {"authorization": f"Bearer {tokens[holder]}"} if holder else {}

    statuses = _fuzz(governance_app, headers)
    print(
        f"governance service: {sum(statuses.values())} requests, "
        f"statuses {dict(sorted(statuses.items()))}"
    )
    assert statuses[200] and statuses[422]
