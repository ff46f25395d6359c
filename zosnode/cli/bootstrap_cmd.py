"""`zosnode bootstrap`: render per-farm boot media."""

from __future__ import annotations

from typing import Any

from zosnode.cli.group import add_group


def register(sub: Any) -> None:
    add_group(sub, "bootstrap", "render per-farm boot media")
