"""Commands of `zosnode flist` (see flist_cmd)."""

from __future__ import annotations

from typing import Any


def register(commands: Any) -> None:
    pass
