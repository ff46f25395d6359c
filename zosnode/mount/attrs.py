"""stat(2) attributes of flist entries: pure mapping, no FUSE calls."""

from __future__ import annotations

from zosnode.flist.format import TYPE_BITS, Entry, Kind
from zosnode.flist.view import FlistView

BLKSIZE = 128 * 1024


def attrs_of(view: FlistView, entry: Entry) -> dict[str, int]:
    """The stat fields of `entry` by their `pyfuse3.EntryAttributes` names; a hardlink
    reports those of the file it names. The image never changes: a, m, c times are one."""
    e = view.resolve(entry)
    size = {Kind.REG: e.size, Kind.SYMLINK: len(e.target), Kind.DIR: 4096}.get(e.kind, 0)
    return {
        "st_ino": e.ino, "st_mode": TYPE_BITS[e.kind] | e.mode, "st_nlink": view.nlink(e),
        "st_uid": e.uid, "st_gid": e.gid, "st_rdev": e.rdev,
        "st_size": size, "st_blksize": BLKSIZE, "st_blocks": (size + 511) // 512,
        "st_atime_ns": e.mtime_ns, "st_mtime_ns": e.mtime_ns, "st_ctime_ns": e.mtime_ns,
    }
