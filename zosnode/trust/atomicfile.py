"""Whole-or-nothing writes of keys, roots, manifests and anchors."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from zosnode.trust.errors import TrustUsageError


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644, overwrite: bool = True) -> None:
    """Write to a temporary name, fsync, then move into place.

    With `overwrite=False` the final step is a hard link, which fails if the
    name exists, so even a racing writer cannot be clobbered.
    """
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise TrustUsageError(f"{parent}: no such directory")
    if not overwrite and path.exists():
        raise TrustUsageError(f"{path}: already exists; refusing to overwrite it")
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise TrustUsageError(f"{path}: already exists; refusing to overwrite it") from None
            os.unlink(tmp)
        dir_fd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
