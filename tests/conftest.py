"""Suite-wide settings. Area fixtures live in each area's own conftest.

Tests that need root, FUSE, QEMU or a daemon skip elsewhere with a message
saying why. In CI (CI=true, as root, with every package .ci/run installs)
nothing may skip: a skip there would hide missing work, so it fails.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where everything it needs is installed: {reason}"
