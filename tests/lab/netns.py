"""Network namespaces created by a test and removed by their own name."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest


def have_root() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


def require_root(what: str = "network namespaces") -> None:
    if not have_root():
        pytest.skip(f"needs root and iproute2 for {what} (CI runs as root)")


def unique_name(prefix: str) -> str:
    # Short: interface names are limited to 15 bytes.
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def run(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=check, capture_output=True, text=True)


def nsexec(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


@contextmanager
def netns(prefix: str = "zt") -> Iterator[str]:
    """A fresh namespace with loopback up; deleted on exit, whatever happens."""
    require_root()
    name = unique_name(prefix)
    run(["ip", "netns", "add", name])
    try:
        run(nsexec(name, "ip", "link", "set", "lo", "up"))
        yield name
    finally:
        run(["ip", "netns", "delete", name], check=False)
