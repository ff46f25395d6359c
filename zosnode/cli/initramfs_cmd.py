"""`zosnode initramfs`: build the node's initramfs."""

from __future__ import annotations

from typing import Any

from zosnode.cli.group import add_group


def register(sub: Any) -> None:
    add_group(sub, "initramfs", "build the node's initramfs")
