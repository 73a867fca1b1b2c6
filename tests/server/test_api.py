"""Every route of `keel server` states who may call it, and refuses everyone else.

keel serve's routes are tested in test_app.py.

The coverage tests walk the apps' own route lists, so a route added without a permission
(or without a row in :data:`keel.server.routes.ROUTES`) fails here before it ships.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from keel.registry.principal import PERMISSIONS
from keel.server.api import create_governance_app
from keel.server.console import CONSOLE_ROUTES
from keel.server.routes import ROUTES

from people import PASSWORD, People, enrol

pytestmark = pytest.mark.slow


@pytest.fixture()
def service(tmp_path: Path, mlflow_template: Path) -> tuple[TestClient, People]:
    """The governance API over a fresh project with root, ana, vera and dan, and a viewer 'olga'."""
    folder = tmp_path / ".keel"
    folder.mkdir()
    shutil.copy(mlflow_template, folder / "mlflow.db")
    people = enrol(folder)
    people.service.users.add("olga", ["viewer"], PASSWORD, by=people.users["root"])
    olga = people.service.users.authenticate_password("olga", PASSWORD)
    tokens = {**people.tokens, "olga": people.service.users.create_token(olga, label="test")}
    return TestClient(create_governance_app(people.service)), People(
        people.service, people.users, tokens
    )


def _path(route_path: str) -> str:
    return (
        route_path.replace("{name}", "loans").replace("{version}", "1").replace("{token_id}", "x")
    )


def test_every_route_of_the_app_is_in_a_table(service: tuple[TestClient, People]) -> None:
    client, _ = service
    served = {
        (method, r.path)
        for r in client.app.routes
        if isinstance(r, APIRoute)
        for method in r.methods
    }
    assert served == {(r.method, r.path) for r in ROUTES} | {
        (r.method, r.path) for r in CONSOLE_ROUTES
    }


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_each_route_is_401_without_credentials_and_403_for_every_role_without_the_permission(
    service: tuple[TestClient, People], route
) -> None:
    client, people = service
    path = _path(route.path)
    anonymous = client.request(
        route.method, path, json={} if route.method in ("POST", "PUT") else None
    )
    if route.permission == "public":
        assert anonymous.status_code == 200
        return
    assert anonymous.status_code == 401, anonymous.text
    assert (
        client.request(
            route.method, path, headers={"Authorization": "Bearer keel_nope_nope"}, json={}
        ).status_code
        == 401
    )
    if route.permission == "password":
        wrong = client.request(
            route.method, path, json={"name": "vera", "password": "not it at all"}
        )
        assert wrong.status_code == 401
        return
    roles = {
        "root": "admin",
        "ana": "developer",
        "vera": "validator",
        "dan": "deployer",
        "olga": "viewer",
    }
    for user, role in roles.items():
        answer = client.request(
            route.method, path, headers={"Authorization": f"Bearer {people.tokens[user]}"}, json={}
        )
        if role in PERMISSIONS[route.permission]:
            assert answer.status_code not in (401, 403) or "may not" not in answer.text, (
                user,
                answer.text,
            )
        else:
            assert answer.status_code == 403, (user, route.path, answer.status_code, answer.text)
            assert "may not" in answer.json()["detail"]


def test_sign_in_makes_a_token_that_then_works_and_the_first_user_needs_no_token(
    tmp_path: Path, mlflow_template: Path
) -> None:
    from people import open_service

    folder = tmp_path / ".keel"
    folder.mkdir()
    shutil.copy(mlflow_template, folder / "mlflow.db")
    client = TestClient(create_governance_app(open_service(folder)))
    first = client.post(
        "/api/v1/users", json={"name": "root", "roles": ["admin"], "password": PASSWORD}
    )
    assert first.status_code == 200, first.text
    second = client.post(
        "/api/v1/users", json={"name": "eve", "roles": ["admin"], "password": PASSWORD}
    )
    assert second.status_code == 401
    token = client.post("/api/v1/tokens", json={"name": "root", "password": PASSWORD}).json()[
        "token"
    ]
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["roles"] == ["admin"]


def test_an_emptied_users_table_does_not_reopen_the_bootstrap(
    service: tuple[TestClient, People],
) -> None:
    """An insider deletes every user row hoping to add an admin without a token.

    The audit log remembers.
    """
    import sqlalchemy as sa

    from keel.server.users import users_table

    client, people = service
    with people.service.users.engine.begin() as conn:
        conn.execute(sa.delete(users_table))
    answer = client.post(
        "/api/v1/users", json={"name": "mallory", "roles": ["admin"], "password": PASSWORD}
    )
    assert answer.status_code == 401


def test_arguments_are_typed_and_the_path_names_the_object(
    service: tuple[TestClient, People],
) -> None:
    client, people = service
    vera = {"Authorization": f"Bearer {people.tokens['vera']}"}
    typed = client.put("/api/v1/policy", headers=vera, json={"note": 7})
    assert typed.status_code == 422
    extra = client.put("/api/v1/policy", headers=vera, json={"note": "x", "by": "root"})
    assert extra.status_code == 422  # no argument can name who acts
    ignored = client.put(
        "/api/v1/policy?deployer_may_approve=true", headers=vera, json={"note": "query ignored"}
    )
    assert ignored.status_code == 200 and ignored.json()["deployer_may_approve"] is False
    refused = client.post(
        "/api/v1/models/loans/versions/1/approve",
        headers={"Authorization": f"Bearer {people.tokens['dan']}"},
        json={"note": "x"},
    )
    assert refused.status_code == 403
    assert (
        people.service.governance.audit.rows()[-1].action == "refused"
    )  # refusals for want of a role are audited
