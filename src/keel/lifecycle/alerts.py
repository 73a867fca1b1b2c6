"""Alerts out of a monitoring pass: structured JSON, and a webhook to an allowed host.

The webhook receives one POST per pass that raised alerts: ``{"model", "as_of", "alerts":
[...]}`` as JSON. The host is checked against the spec's allow-list again at send time (the
spec already refuses a webhook outside it), redirects are not followed, and a failure to
deliver is reported, never raised: the alerts still reach the output and the exit code.

The spec is written by the model's author, so it cannot open the way to this machine's own
services: a host that resolves to a loopback, link-local (cloud metadata), unspecified,
multicast or reserved address is refused unless the operator names it in
``KEEL_WEBHOOK_HOSTS`` (comma separated); when that variable is set, it is the allow-list.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from keel.errors import SpecError
from keel.monitoring.monitor import Alert
from keel.spec import AlertsSpec


def alert_lines(alerts: list[Alert], *, model: str, as_of: str) -> list[str]:
    """One JSON object per alert, with the model and the run's as-of time (for log shippers)."""
    return [
        json.dumps({"model": model, "as_of": as_of, **a.to_dict()}, sort_keys=True) for a in alerts
    ]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect could lead off the allow-list


OPERATOR_HOSTS = "KEEL_WEBHOOK_HOSTS"


def operator_refusal(host: str, port: int | None) -> str | None:
    """Why the operator's rules refuse sending to ``host``, or None when they allow it.

    See the module docstring.
    """
    allowed = [h.strip() for h in os.environ.get(OPERATOR_HOSTS, "").split(",") if h.strip()]
    if allowed:
        return (
            None
            if host in allowed
            else f"webhook host '{host}' is not in {OPERATOR_HOSTS} {allowed}"
        )
    try:
        # TCP resolves to AF_INET/AF_INET6 addresses, whose host part is text; str() tells mypy
        # so (typeshed's sockaddr also allows the int of other families).
        addresses = {
            str(info[4][0])
            for info in socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP)
        }
    except OSError as error:
        return f"the webhook host '{host}' does not resolve: {error}"
    for address in sorted(addresses):
        ip = ipaddress.ip_address(address.split("%")[0])
        if (
            ip.is_loopback
            or ip.is_link_local
            or ip.is_unspecified
            or ip.is_multicast
            or ip.is_reserved
        ):
            return (
                f"webhook host '{host}' resolves to {ip}, an address of this machine or its "
                "network's metadata services; only the operator can allow it "
                f"({OPERATOR_HOSTS}={host})"
            )
    return None


def send_webhook(
    alerts: list[Alert], settings: AlertsSpec, *, model: str, as_of: str
) -> str | None:
    """POST the alerts to the configured webhook; None when delivered, else why not.

    None too when no webhook is configured.
    """
    if not alerts or settings.webhook is None:
        return None
    host = urllib.parse.urlsplit(settings.webhook).hostname or ""
    if host not in settings.allowed_hosts:
        raise SpecError(
            f"webhook host '{host}' is not in alerts.allowed_hosts {settings.allowed_hosts}"
        )
    refused = operator_refusal(host, urllib.parse.urlsplit(settings.webhook).port)
    if refused:
        return refused
    body = json.dumps(
        {"model": model, "as_of": as_of, "alerts": [a.to_dict() for a in alerts]}
    ).encode()
    request = urllib.request.Request(  # noqa: S310  (AlertsSpec.webhook's pattern: http(s) only)
        settings.webhook,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "keel-monitor"},
    )
    try:
        with urllib.request.build_opener(_NoRedirect).open(
            request, timeout=settings.timeout_seconds
        ) as answer:
            if not 200 <= answer.status < 300:
                return f"the webhook answered {answer.status}"
    except (urllib.error.URLError, OSError) as error:
        return f"the webhook at {settings.webhook} could not be reached: {error}"
    return None
