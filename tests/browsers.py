"""Debian's chromium for the page tests: a skip where it is missing, but a failure under CI.

.ci/run installs it.
"""

from __future__ import annotations

import os
import shutil

import pytest


def chromium() -> str:
    """The path of the chromium binary; skips locally and fails under CI when there is none."""
    path = shutil.which("chromium") or (
        "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None
    )
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(
                "CI must run the browser tests, but there is no chromium "
                "(apt-get install -y chromium)",
                pytrace=False,
            )
        pytest.skip("no chromium on PATH: apt-get install -y chromium")
    return path
