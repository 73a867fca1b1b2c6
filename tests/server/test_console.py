"""The console over HTTP: sessions, CSRF, headers, and every console route's refusals.

A browser test is in test_console_browser.py.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from keel.registry.principal import PERMISSIONS
from keel.server.api import create_governance_app
from keel.server.console import CONSOLE_ROUTES, PAGE_CSP

from factories import register_version
from people import PASSWORD, People, enrol

pytestmark = pytest.mark.slow


@pytest.fixture()
def console(tmp_path: Path, mlflow_template: Path, saved_model: Path) -> tuple[TestClient, People]:
    """The governance app over a project whose loans v1 (by ana) is validated."""
    folder = tmp_path / ".keel"
    folder.mkdir()
    shutil.copy(mlflow_template, folder / "mlflow.db")
    people = enrol(folder)
    register_version(people.service.governance, saved_model, author=people.dev)
    return TestClient(create_governance_app(people.service)), people


def _sign_in(client: TestClient, name: str) -> str:
    """Sign in; returns the CSRF token of the session's forms."""
    answer = client.post(
        "/console/login", data={"name": name, "password": PASSWORD}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    page = client.get("/console/me").text
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def _path(path: str) -> str:
    return path.replace("{name}", "loans").replace("{version}", "1")


def test_pages_need_a_session_and_forms_need_one_too(console: tuple[TestClient, People]) -> None:
    client, _ = console
    for route in CONSOLE_ROUTES:
        answer = client.request(route.method, _path(route.path), data={}, follow_redirects=False)
        if route.permission == "public":
            assert answer.status_code in (200, 401), (
                route,
                answer.status_code,
            )  # 401: a bad sign-in
        elif route.method == "GET":
            assert answer.status_code == 303 and answer.headers["location"].startswith(
                "/console/login"
            )
        else:
            assert answer.status_code == 401, route


@pytest.mark.parametrize(
    "route",
    [r for r in CONSOLE_ROUTES if r.method == "POST" and r.permission in PERMISSIONS],
    ids=lambda r: r.path,
)
def test_every_console_action_is_403_for_each_role_without_the_permission(
    console: tuple[TestClient, People], route
) -> None:
    client, people = console
    roles = {"root": "admin", "ana": "developer", "vera": "validator", "dan": "deployer"}
    for user, role in roles.items():
        client.cookies.clear()
        csrf = _sign_in(client, user)
        answer = client.post(
            _path(route.path),
            data={"csrf": csrf, "note": "x", "password": "wrong password 1"},
            follow_redirects=False,
        )
        if role not in PERMISSIONS[route.permission]:
            assert answer.status_code == 403, (user, route.path, answer.status_code)


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
    console: tuple[TestClient, People],
) -> None:
    client, people = console
    _sign_in(client, "vera")
    forged = client.post("/console/models/loans/versions/1/approve", data={"note": "looks fine"})
    assert forged.status_code == 403 and "CSRF" in forged.text
    assert people.service.governance.ledger().model("loans").versions[1].state == "validated"


def test_a_validator_approves_with_conditions_through_the_console(
    console: tuple[TestClient, People],
) -> None:
    client, people = console
    csrf = _sign_in(client, "vera")
    page = client.get("/console/models/loans/versions/1")
    assert page.status_code == 200 and "Decision summary" in page.text and "Approve" in page.text
    done = client.post(
        "/console/models/loans/versions/1/approve",
        follow_redirects=False,
        data={"csrf": csrf, "note": "reasons read", "conditions": "re-validate in 6 months"},
    )
    assert done.status_code == 303
    after = client.get(done.headers["location"]).text
    assert "approved" in after and "re-validate in 6 months" in after
    row = people.service.governance.history("loans")[-1]
    assert (row.action, row.actor) == ("approve", people.val.actor)


def test_security_headers_cookie_flags_idle_session_and_sign_out(
    console: tuple[TestClient, People],
) -> None:
    client, _ = console
    answer = client.post(
        "/console/login", data={"name": "dan", "password": PASSWORD}, follow_redirects=False
    )
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    page = client.get("/console/models")
    assert page.headers["content-security-policy"] == PAGE_CSP and "script-src" not in PAGE_CSP
    assert "<script" not in page.text
    client.cookies.set("keel_session", "forged.value.sig", path="/console")
    assert client.get("/console/models", follow_redirects=False).status_code == 303
    client.cookies.clear()
    csrf = _sign_in(client, "dan")
    out = client.post("/console/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303
    assert (
        client.get("/console/models", follow_redirects=False).status_code == 303
    )  # the token is revoked


def test_an_html_payload_renders_as_text(console: tuple[TestClient, People]) -> None:
    client, people = console
    csrf = _sign_in(client, "vera")
    client.post(
        "/console/models/loans/versions/1/reject",
        data={"csrf": csrf, "note": "<script>alert(1)</script>"},
    )
    audit = client.get("/console/audit").text
    assert (
        "<script>alert(1)</script>" not in audit
        and "&lt;script&gt;alert(1)&lt;/script&gt;" in audit
    )


def test_audit_export_and_filters(console: tuple[TestClient, People]) -> None:
    client, _ = console
    _sign_in(client, "dan")
    as_json = client.get("/console/audit.json?action=register")
    assert as_json.status_code == 200 and [r["action"] for r in as_json.json()] == ["register"]
    as_csv = client.get("/console/audit.csv?model=loans")
    assert as_csv.headers["content-type"].startswith("text/csv") and "register" in as_csv.text
    page = client.get("/console/audit").text
    assert "Chain verified" in page and "Latest signed checkpoint: row" in page


def test_a_validator_changes_the_policy_in_the_console_and_it_is_audited(
    console: tuple[TestClient, People],
) -> None:
    client, people = console
    csrf = _sign_in(client, "vera")
    done = client.post(
        "/console/policy",
        follow_redirects=False,
        data={
            "csrf": csrf,
            "thresholds": "min_auc=0.75, min_adverse_impact_ratio=0.8",
            "auto_promote": "loans",
            "note": "MRM-2026-12",
        },
    )
    assert done.status_code == 303
    page = client.get("/console/policy").text
    assert "version 1" in page and "min_adverse_impact_ratio" in page and "MRM-2026-12" in page
    policy = people.service.governance.policy()
    assert policy.thresholds == {
        "min_auc": 0.75,
        "min_adverse_impact_ratio": 0.8,
    } and policy.auto_promote == ("loans",)
    bad = client.post(
        "/console/policy", data={"csrf": csrf, "thresholds": "min_auc=high", "note": "x"}
    )
    assert bad.status_code == 422 and "NAME=NUMBER" in bad.text
    version = client.get(
        "/console/models/loans/versions/1"
    ).text  # judged again under the new floors
    assert "min_adverse_impact_ratio[no protected attribute]" in version and "FAIL" in version
