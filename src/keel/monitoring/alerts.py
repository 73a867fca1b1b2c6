"""Alerts out of a monitoring pass: structured JSON, and a webhook to an allowed host.

The webhook receives one POST per pass that raised alerts: ``{"model", "as_of", "alerts":
[...]}`` as JSON. The host is checked against the spec's allow-list again at send time (the
spec already refuses a webhook outside it), redirects are not followed, and a failure to
deliver is reported, never raised: the alerts still reach the output and the exit code.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from keel.errors import SpecError
from keel.monitoring.monitor import Alert
from keel.spec import AlertsSpec


def alert_lines(alerts: list[Alert], *, model: str, as_of: str) -> list[str]:
    """One JSON object per alert, with the model and the run's as-of time (for log shippers)."""
    return [json.dumps({"model": model, "as_of": as_of, **a.to_dict()}, sort_keys=True) for a in alerts]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect could lead off the allow-list


def send_webhook(alerts: list[Alert], settings: AlertsSpec, *, model: str, as_of: str) -> str | None:
    """POST the alerts to the configured webhook; None when delivered (or none configured), else why not."""
    if not alerts or settings.webhook is None:
        return None
    host = urllib.parse.urlsplit(settings.webhook).hostname or ""
    if host not in settings.allowed_hosts:
        raise SpecError(f"webhook host '{host}' is not in alerts.allowed_hosts {settings.allowed_hosts}")
    body = json.dumps({"model": model, "as_of": as_of, "alerts": [a.to_dict() for a in alerts]}).encode()
    request = urllib.request.Request(settings.webhook, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "keel-monitor"})
    try:
        with urllib.request.build_opener(_NoRedirect).open(request, timeout=settings.timeout_seconds) as answer:
            if not 200 <= answer.status < 300:
                return f"the webhook answered {answer.status}"
    except (urllib.error.URLError, OSError) as error:
        return f"the webhook at {settings.webhook} could not be reached: {error}"
    return None
