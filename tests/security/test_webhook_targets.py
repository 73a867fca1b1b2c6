"""A spec's author cannot send alerts to this machine's own services or the cloud's metadata address
(issue 15, finding 10): only the operator's KEEL_WEBHOOK_HOSTS can allow them."""

from __future__ import annotations

import pytest

from keel.lifecycle.alerts import send_webhook
from keel.monitoring.monitor import Alert
from keel.spec import AlertsSpec

ALERT = Alert(
    window="2026-01-05/2026-01-11",
    kind="drift",
    severity="alert",
    subject="income",
    message="drifted",
)


@pytest.mark.parametrize(
    "url, host",
    [
        ("http://127.0.0.1:9/hook", "127.0.0.1"),
        ("http://localhost:9/hook", "localhost"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254"),
        ("http://[::1]:9/hook", "::1"),
        ("http://0.0.0.0:9/hook", "0.0.0.0"),
    ],
)
def test_loopback_link_local_and_unspecified_targets_are_refused_even_when_the_spec_lists_them(
    url: str, host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KEEL_WEBHOOK_HOSTS", raising=False)
    settings = AlertsSpec(webhook=url, allowed_hosts=[host], timeout_seconds=1)
    why = send_webhook([ALERT], settings, model="loans", as_of="2026-01-12")
    assert why is not None and "only the operator can allow it (KEEL_WEBHOOK_HOSTS=" in why


def test_the_operators_list_is_the_allow_list_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_WEBHOOK_HOSTS", "alerts.bank.internal")
    settings = AlertsSpec(
        webhook="https://hooks.example.com/x", allowed_hosts=["hooks.example.com"]
    )
    why = send_webhook([ALERT], settings, model="loans", as_of="2026-01-12")
    assert (
        why
        == "webhook host 'hooks.example.com' is not in KEEL_WEBHOOK_HOSTS ['alerts.bank.internal']"
    )
