"""Dead FUSE mounts and lazy detach, without pyfuse3: the agent cleans up after its children."""

import ctypes
import errno
import os
import subprocess
from pathlib import Path

from zosnode.mount.errors import MountpointUnusable

_MNT_DETACH = 2


def libc() -> ctypes.CDLL:
    """libc from this process's symbols: `find_library("c")` needs ldconfig or gcc (not here)."""
    return ctypes.CDLL(None, use_errno=True)


def is_stale(mountpoint: Path) -> bool:
    # statfs always reaches the FUSE server; stat may come from the kernel's attribute cache.
    try:
        os.statvfs(mountpoint)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def detach(mountpoint: Path) -> None:
    """Lazily unmount `mountpoint` (the kernel drops it once no one uses it)."""
    if os.geteuid() == 0 and libc().umount2(os.fsencode(mountpoint), _MNT_DETACH) == 0:
        return
    subprocess.run(["fusermount3", "-u", "-z", os.fspath(mountpoint)], capture_output=True)


def recover_stale(mountpoint: Path) -> None:
    """Detach a dead FUSE mount left at `mountpoint` by a crash."""
    if is_stale(mountpoint):
        detach(mountpoint)
        if is_stale(mountpoint):
            raise MountpointUnusable(f"{mountpoint}: a dead mount is there and will not detach")
