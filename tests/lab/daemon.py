"""Lab daemons started by a test: wait until one says it is ready, stop it by its pid."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable

import pytest


def wait_ready(proc: subprocess.Popen[bytes], ready: Callable[[], bool], what: str,
               timeout: float, output: Callable[[], str]) -> None:
    """Poll `ready`; fail the test, showing `output`, if `proc` dies or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what} did not start:\n{output()}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; only this process, by its pid."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
