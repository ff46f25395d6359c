"""A read-only view of an flist, shared by extract, cat, ls, diff and the FUSE mount: inode =
entry index + 1 (FUSE's root is 1); a hardlink resolves to its file (text paths: `browse`)."""

from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate

from zosnode.flist.blocks import BlockRef
from zosnode.flist.errors import FlistInputError
from zosnode.flist.format import TYPE_BITS, Entry, Flist, Hole, Kind, decode

BLKSIZE = 128 * 1024


@dataclass(frozen=True)
class ReadPiece:
    """`length` bytes of a read: from `start` in the decoded block of `ref`, or zeros."""

    ref: BlockRef | None
    start: int
    length: int


class FlistView:
    def __init__(self, flist: Flist) -> None:
        self.flist = flist
        self.entries = flist.entries
        n = len(self.entries)
        self._children: list[dict[bytes, Entry] | None] = [None] * n
        self._nlink = [1] * n
        self._offsets: list[tuple[int, ...] | None] = [None] * n
        for e in self.entries:
            if e.kind is Kind.DIR:
                self._children[e.index] = {}
                self._nlink[e.index] = 2
            if e.parent is not None:
                kids = self._children[e.parent]
                assert kids is not None
                kids[e.name] = e
                if e.kind is Kind.DIR:
                    self._nlink[e.parent] += 1
            if e.link is not None:  # a hardlink
                self._nlink[e.link] += 1

    @classmethod
    def from_bytes(cls, data: bytes) -> "FlistView":
        return cls(decode(data))

    @property
    def root(self) -> Entry:
        return self.entries[0]

    def by_ino(self, ino: int) -> Entry:
        if not 0 < ino <= len(self.entries):
            raise FlistInputError(f"no inode {ino}")
        return self.entries[ino - 1]

    def resolve(self, entry: Entry) -> Entry:
        """The entry that holds the data and attributes (itself unless a hardlink)."""
        return entry if entry.link is None else self.entries[entry.link]

    def nlink(self, entry: Entry) -> int:
        return self._nlink[self.resolve(entry).index]

    def stat(self, entry: Entry) -> dict[str, int]:
        """stat(2) fields, named as pyfuse3's; a hardlink's are its file's; a, m, c times one."""
        e = self.resolve(entry)
        size = {Kind.REG: e.size, Kind.SYMLINK: len(e.target), Kind.DIR: 4096}.get(e.kind, 0)
        return {
            "st_ino": e.ino, "st_mode": TYPE_BITS[e.kind] | e.mode, "st_nlink": self.nlink(e),
            "st_uid": e.uid, "st_gid": e.gid, "st_rdev": e.rdev,
            "st_size": size, "st_blksize": BLKSIZE, "st_blocks": (size + 511) // 512,
            "st_atime_ns": e.mtime_ns, "st_mtime_ns": e.mtime_ns, "st_ctime_ns": e.mtime_ns,
        }

    def child(self, parent: Entry, name: bytes) -> Entry | None:
        kids = self._children[parent.index]
        return None if kids is None else kids.get(name)

    def children(self, entry: Entry) -> list[Entry]:
        """Children in name order (the order the builder wrote them)."""
        kids = self._children[entry.index]
        if kids is None:
            raise FlistInputError(f"{self.path_of(entry)!r} is not a directory")
        return [kids[name] for name in sorted(kids)]

    def path_of(self, entry: Entry) -> bytes:
        parts = []
        while entry.parent is not None:
            parts.append(entry.name)
            entry = self.entries[entry.parent]
        return b"/" + b"/".join(reversed(parts))

    def _extent_offsets(self, entry: Entry) -> tuple[int, ...]:
        offs = self._offsets[entry.index]
        if offs is None:
            lengths = (x.length for x in entry.extents)
            offs = self._offsets[entry.index] = (0, *accumulate(lengths))[:-1]
        return offs

    def plan_read(self, entry: Entry, offset: int, size: int) -> list[ReadPiece]:
        """The pieces that make up bytes [offset, offset+size) of a file, clipped at EOF."""
        entry = self.resolve(entry)
        if entry.kind is not Kind.REG:
            raise FlistInputError(f"{self.path_of(entry)!r} is not a regular file")
        if offset < 0 or size < 0:
            raise FlistInputError("negative read")
        end = min(entry.size, offset + size)
        if offset >= end:
            return []
        offs = self._extent_offsets(entry)
        pieces = []
        pos = offset
        i = bisect_right(offs, offset) - 1  # the extent that holds `offset`
        while pos < end:
            x = entry.extents[i]
            within = pos - offs[i]
            take = min(x.length - within, end - pos)
            pieces.append(ReadPiece(None, 0, take) if isinstance(x, Hole)
                          else ReadPiece(x, x.offset + within, take))
            pos += take
            i += 1
        return pieces
