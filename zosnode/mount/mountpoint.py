"""Mountpoints as the kernel sees them: dead FUSE mounts, lazy detach.

Kept apart from the FUSE service (no pyfuse3 here): the agent detaches what
its mount children leave behind without loading the FUSE front end itself.
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
from pathlib import Path

from zosnode.mount.errors import MountpointUnusable

_MNT_DETACH = 2


def libc() -> ctypes.CDLL:
    """libc's functions, from the symbols already loaded into this process.

    `ctypes.util.find_library("c")` would ask ldconfig, gcc or ld, and a node's
    initramfs has none of them: it would run three failing programs and then
    return None, which is this very call.
    """
    return ctypes.CDLL(None, use_errno=True)


def is_stale(mountpoint: Path) -> bool:
    # statfs always reaches the FUSE server; stat may be answered from the
    # kernel's attribute cache long after the server died.
    try:
        os.statvfs(mountpoint)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def detach(mountpoint: Path) -> None:
    """Lazily unmount `mountpoint` (the kernel drops it once no one uses it)."""
    if os.geteuid() == 0 and libc().umount2(os.fsencode(mountpoint), _MNT_DETACH) == 0:
        return
    subprocess.run(["fusermount3", "-u", "-z", os.fspath(mountpoint)],
                   capture_output=True, check=False)


def recover_stale(mountpoint: Path) -> bool:
    """Detach a dead FUSE mount left at `mountpoint` by a crash; True if there was one."""
    if not is_stale(mountpoint):
        return False
    detach(mountpoint)
    if is_stale(mountpoint):
        raise MountpointUnusable(f"{mountpoint}: a dead mount is there and will not detach")
    return True
