"""`zosnode hub`: run and talk to a hub."""

from __future__ import annotations

from typing import Any

from zosnode.cli.group import add_group


def register(sub: Any) -> None:
    add_group(sub, "hub", "run and talk to a hub")
