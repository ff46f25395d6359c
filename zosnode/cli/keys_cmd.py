"""`zosnode keys`: generate and show signing keys."""

from __future__ import annotations

from typing import Any

from zosnode.cli.group import add_group


def register(sub: Any) -> None:
    add_group(sub, "keys", "generate and show signing keys")
