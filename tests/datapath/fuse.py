"""Shared pieces of the FUSE tests: skip rules and a tree comparison."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest


def require_fuse() -> None:
    if os.geteuid() != 0:
        pytest.skip("FUSE mounts here need root (CI runs as root)")
    if not os.path.exists("/dev/fuse"):
        pytest.skip("needs /dev/fuse")
    if shutil.which("fusermount3") is None:
        pytest.skip("needs fusermount3 (apt fuse3)")


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry's stat attributes, xattrs, link target and hardlink group."""
    out: dict[str, tuple[object, ...]] = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            xattrs = tuple(
                (n, os.getxattr(p, n, follow_symlinks=False))
                for n in sorted(os.listxattr(p, follow_symlinks=False))
            )
            target = os.readlink(p) if stat.S_ISLNK(st.st_mode) else None
            size = st.st_size if not stat.S_ISDIR(st.st_mode) else None
            group = inodes.setdefault(st.st_ino, rel) if st.st_nlink > 1 and not stat.S_ISDIR(
                st.st_mode) else None
            out[rel] = (st.st_mode, st.st_uid, st.st_gid, size, st.st_mtime_ns,
                        st.st_nlink if not stat.S_ISDIR(st.st_mode) else None,
                        st.st_rdev, xattrs, target, group)
    return out
