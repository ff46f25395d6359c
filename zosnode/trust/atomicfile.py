"""Whole-or-nothing writes of keys, roots, manifests and anchors."""

from __future__ import annotations

from pathlib import Path

from zosnode import atomicfile
from zosnode.trust.errors import TrustUsageError


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644, overwrite: bool = True) -> None:
    """`zosnode.atomicfile.write_atomic`, with the user's mistakes named as ours."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise TrustUsageError(f"{parent}: no such directory")
    if not overwrite and path.exists():
        raise TrustUsageError(f"{path}: already exists; refusing to overwrite it")
    try:
        atomicfile.write_atomic(path, data, mode=mode, overwrite=overwrite)
    except FileExistsError:
        raise TrustUsageError(f"{path}: already exists; refusing to overwrite it") from None
