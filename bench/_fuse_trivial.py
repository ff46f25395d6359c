#!/usr/bin/env python3
"""The yardstick for zosnode's FUSE reads: the least a pyfuse3 file system can do.

One read-only file of SIZE_MIB MiB whose every read returns a slice of one
constant buffer. Same request size as zosnode's mount (the bdi's readahead
raised to 1 MiB after INIT), same keep_cache, same pyfuse3 and trio: what is
left is FUSE and Python's floor. Runs in the foreground until SIGINT/SIGTERM;
prints "ready" on stdout once reads are served.

Usage: python3 bench/_fuse_trivial.py MOUNTPOINT SIZE_MIB   (root)
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import sys
from pathlib import Path
from typing import Any

import pyfuse3
import trio

MAX_READ = 1024 * 1024
_BUF = memoryview(b"z" * MAX_READ)
FILE_INO = pyfuse3.ROOT_INODE + 1
NAME = b"file"


class Trivial(pyfuse3.Operations):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def _attr(self, ino: int) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = ino
        if ino == FILE_INO:
            a.st_mode = stat.S_IFREG | 0o444
            a.st_size = self.size
        else:
            a.st_mode = stat.S_IFDIR | 0o555
            a.st_nlink = 2
        a.st_blksize = 4096
        a.entry_timeout = a.attr_timeout = 86400.0
        return a

    async def getattr(self, inode: int, ctx: Any) -> pyfuse3.EntryAttributes:
        if inode not in (pyfuse3.ROOT_INODE, FILE_INO):
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attr(inode)

    async def lookup(self, parent_inode: int, name: bytes, ctx: Any) -> pyfuse3.EntryAttributes:
        if parent_inode != pyfuse3.ROOT_INODE or name != NAME:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attr(FILE_INO)

    async def open(self, inode: int, flags: int, ctx: Any) -> pyfuse3.FileInfo:
        return pyfuse3.FileInfo(fh=inode, keep_cache=True)

    async def read(self, fh: int, off: int, size: int) -> memoryview:  # type: ignore[override]
        n = max(0, min(size, self.size - off, MAX_READ))
        return _BUF[:n]

    async def opendir(self, inode: int, ctx: Any) -> int:
        return inode

    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        if start_id == 0:
            pyfuse3.readdir_reply(token, NAME, self._attr(FILE_INO), 1)


async def _raise_readahead(mp: str) -> None:
    st = await trio.to_thread.run_sync(os.stat, mp)
    knob = Path(f"/sys/class/bdi/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/read_ahead_kb")
    await trio.to_thread.run_sync(knob.write_text, str(MAX_READ // 1024))
    print("ready", flush=True)


async def serve(mp: str, size: int) -> None:
    pyfuse3.init(Trivial(size), mp, {"ro", "fsname=trivial", "allow_other"})
    try:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pyfuse3.main)
                nursery.start_soon(_raise_readahead, mp)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
    finally:
        pyfuse3.close(unmount=True)


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    trio.run(serve, sys.argv[1], int(sys.argv[2]) << 20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
