"""The console in a real browser (Debian's chromium driven by Playwright), with the network off.

A validator reviews, is refused approval of her own model and approves another's with conditions;
a deployer promotes it; the audit page shows both rows and a verified chain; a developer sees no
approve button and a forged POST gets 403; an HTML payload renders as text. Each page's screenshot
is saved (under the test's tmp folder) and checked not blank.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml

from keel.lifecycle.run import run_project
from keel.server.api import create_governance_app
from keel.spec import load_spec

from browsers import chromium
from people import PASSWORD, People, enrol
from server_process import free_port

pytestmark = pytest.mark.slow
PAYLOAD = "<script>alert('owned')</script>"


@pytest.fixture()
def site(loans_project: Path) -> Iterator[tuple[str, People]]:
    """`keel server`'s app on a loopback port over the loans project.

    v1 is by ana, v2 by mia (developer+validator).
    """
    raw = yaml.safe_load(loans_project.read_text())
    raw.update(
        tuning={"trials": 1},
        models={"families": ["logistic"]},
        description=PAYLOAD,
        model_card={"purpose": PAYLOAD},
    )
    loans_project.write_text(yaml.safe_dump(raw))
    project_dir = loans_project.parent / ".keel"
    people = enrol(project_dir)
    people.service.users.add("mia", ["developer", "validator"], PASSWORD, by=people.users["root"])
    mia = people.service.users.authenticate_password("mia", PASSWORD)
    spec = load_spec(loans_project)
    run_project(spec, project_dir=project_dir, principal=people.dev)
    run_project(spec, project_dir=project_dir, principal=mia, with_card=False)
    _monitored(project_dir, people)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_governance_app(people.service), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the governance app did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", people
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _monitored(project_dir: Path, people: People) -> None:
    """A real `keel monitor` result for loans v1: three weeks of applications.

    Incomes are 40% lower in the third.
    """
    import json

    import numpy as np
    import pandas as pd

    from keel.monitoring.monitor import monitor
    from keel.spec import MonitoringSpec

    from factories import make_loans

    model, _ = people.service.governance.registry.load_model("loans", 1)
    start, frames = pd.Timestamp("2026-01-05"), []
    for week in range(3):
        rows = make_loans(600, seed=week)
        if week == 2:
            rows["income"] = (rows["income"] * 0.6).round(0)
        rows["time"] = (
            start + pd.Timedelta(weeks=week) + pd.to_timedelta(np.arange(600) * 1000, unit="s")
        )
        frames.append(rows)
    events = pd.concat(frames, ignore_index=True)
    events = events.assign(
        probability=model.predict_proba(events),
        version=1,
        label=events.pop("defaulted").astype(float),
        label_time=pd.NaT,
    )
    report = monitor(
        events,
        model,
        MonitoringSpec(window="week"),
        name="loans",
        as_of=start + pd.Timedelta(weeks=3),
    )
    latest = project_dir / "monitoring" / "loans" / "latest.json"
    latest.parent.mkdir(parents=True)
    latest.write_text(json.dumps(report.to_dict(), default=str))


def _not_blank(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as image:
        colours = image.convert("L").getextrema()
    assert path.stat().st_size > 5_000 and colours[1] - colours[0] > 50, f"{path} looks blank"


def test_review_approve_with_conditions_promote_and_audit_in_a_browser(
    site: tuple[str, People], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    base, people = site
    shots, outside, dialogs = tmp_path / "screens", [], []
    shots.mkdir()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium(),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        context = browser.new_context(viewport={"width": 1200, "height": 900})

        def offline(route: Any) -> None:  # the network is off: only the console itself answers
            if route.request.url.startswith(base):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        context.route("**/*", offline)
        page = context.new_page()
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

        def sign_in(name: str) -> None:
            page.goto(f"{base}/console/models")
            assert "/console/login" in page.url  # the pages need a session
            page.fill("input[name=name]", name)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/console/models")

        def shoot(name: str) -> None:
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
            _not_blank(shots / f"{name}.png")

        page.goto(f"{base}/console/login")
        shoot("login")
        sign_in("mia")  # a validator who also wrote v2
        shoot("models")
        assert page.locator("text=validated").count() >= 2
        page.goto(f"{base}/console/models/loans/versions/2")
        page.fill("form[action$='/approve'] textarea[name=note]", "my own")
        page.click("form[action$='/approve'] button")
        assert (
            "four-eyes rule: mia is the author of loans/v2" in page.locator(".error").inner_text()
        )
        page.goto(f"{base}/console/models/loans/versions/1")
        shoot("version")
        summary = page.locator("#decision").inner_text()
        assert (
            "Decision summary" in summary and "95% interval" in summary and "validated" in summary
        )
        card = page.frame_locator("iframe.model-card")
        assert PAYLOAD in card.locator("body").inner_text()  # the spec's HTML payload shows as text
        page.fill("form[action$='/approve'] textarea[name=note]", "Reasons and fairness reviewed")
        page.fill(
            "form[action$='/approve'] textarea[name=conditions]",
            "Re-validate within 6 months <b>now</b>",
        )
        page.click("form[action$='/approve'] button")
        page.wait_for_selector(".message")
        assert "Re-validate within 6 months <b>now</b>" in page.locator(".conditions").inner_text()
        page.click("header button")  # sign out
        page.wait_for_url(f"{base}/console/login*")

        sign_in("ana")  # the developer: no approve button, and a forged POST is refused
        page.goto(f"{base}/console/models/loans/versions/2")
        assert page.locator("form[action$='/approve']").count() == 0
        token = page.locator("input[name=csrf]").first.get_attribute("value")
        forged = page.request.post(
            f"{base}/console/models/loans/versions/2/approve",
            form={"csrf": token or "", "note": "let me in"},
        )
        assert forged.status == 403
        csrf_less = page.request.post(
            f"{base}/console/models/loans/versions/2/reject", form={"note": "x"}
        )
        assert csrf_less.status == 403
        page.click("header button")
        page.wait_for_url(f"{base}/console/login*")

        sign_in("dan")  # the deployer promotes v1
        page.goto(f"{base}/console/models/loans/versions/1")
        page.fill("form[action$='/promote'] input[name=note]", "first release")
        page.click("form[action$='/promote'] button")
        page.wait_for_selector(".message")
        assert "champion" in page.locator("#decision").inner_text()
        page.goto(f"{base}/console/audit?model=loans")
        shoot("audit")
        audit = page.locator("main").inner_text()
        assert "Chain verified" in audit and "Latest signed checkpoint: row" in audit
        assert "approve" in audit and "promote" in audit and "vera" not in audit
        for name in ("policy", "monitoring", "me"):
            page.goto(f"{base}/console/{name}")
            shoot(name)
            if name == "monitoring":
                shown = page.locator("main").inner_text()
                assert "alert" in shown and "income" in shown and "estimated AUC" in shown
        browser.close()

    assert outside == [] and dialogs == []
    mia = people.service.users.authenticate_password("mia", PASSWORD)
    history = [
        (row.action, row.actor, row.object) for row in people.service.governance.history("loans")
    ]
    assert [h for h in history if h[0] != "register"] == [
        ("refused", mia.actor, "loans/v2"),
        ("approve", mia.actor, "loans/v1"),
        ("refused", people.dev.actor, "loans/v2"),
        ("promote", people.dep.actor, "loans/v1"),
    ]
