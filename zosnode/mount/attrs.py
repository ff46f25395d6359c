"""stat(2) attributes of flist entries: pure mapping, no FUSE calls."""

from __future__ import annotations

import stat
from dataclasses import dataclass

from zosnode.flist.format import Entry, Kind
from zosnode.flist.view import FlistView

TYPE_BITS = {
    Kind.DIR: stat.S_IFDIR,
    Kind.REG: stat.S_IFREG,
    Kind.SYMLINK: stat.S_IFLNK,
    Kind.CHR: stat.S_IFCHR,
    Kind.BLK: stat.S_IFBLK,
    Kind.FIFO: stat.S_IFIFO,
}
BLKSIZE = 128 * 1024


@dataclass(frozen=True)
class Attrs:
    ino: int
    mode: int
    nlink: int
    uid: int
    gid: int
    rdev: int
    size: int
    blocks: int
    mtime_ns: int


def attrs_of(view: FlistView, entry: Entry) -> Attrs:
    """The attributes of `entry`; a hardlink reports those of the file it names."""
    e = view.resolve(entry)
    size = e.size if e.kind is Kind.REG else len(e.target) if e.kind is Kind.SYMLINK else 0
    if e.kind is Kind.DIR:
        size = 4096
    return Attrs(
        ino=e.ino,
        mode=TYPE_BITS[e.kind] | e.mode,
        nlink=view.nlink(e),
        uid=e.uid,
        gid=e.gid,
        rdev=e.rdev,
        size=size,
        blocks=(size + 511) // 512,
        mtime_ns=e.mtime_ns,
    )
