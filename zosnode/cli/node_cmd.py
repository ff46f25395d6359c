"""`zosnode node`: the node agent (runs as /init)."""

from __future__ import annotations

from typing import Any

from zosnode.cli.group import add_group


def register(sub: Any) -> None:
    add_group(sub, "node", "the node agent (runs as /init)")
