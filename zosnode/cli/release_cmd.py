"""`zosnode release`: build, sign and verify release manifests."""

from __future__ import annotations

from typing import Any

from zosnode.cli.group import add_group


def register(sub: Any) -> None:
    add_group(sub, "release", "build, sign and verify release manifests")
