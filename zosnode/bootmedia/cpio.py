"""The cpio "newc" format the kernel unpacks into its rootfs: write and read.

Reproducible by construction: entries are sorted (by path, or by a key
the caller gives that ends in the path), inode numbers are assigned in that
order, owner is root and every time is the one given.
Pure code: bytes in, bytes out.
"""

from __future__ import annotations

import posixpath
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum

from zosnode.bootmedia.errors import BuildError, FormatError

MAGIC = b"070701"
HEADER_SIZE = 110
TRAILER = "TRAILER!!!"
_FIELDS = 13
_HEX = frozenset(b"0123456789abcdefABCDEF")


class Kind(Enum):
    FILE = stat.S_IFREG
    DIR = stat.S_IFDIR
    SYMLINK = stat.S_IFLNK
    CHAR = stat.S_IFCHR
    BLOCK = stat.S_IFBLK


@dataclass(frozen=True)
class Entry:
    """One member. `path` is relative to the archive root, without a leading slash."""

    path: str
    kind: Kind
    perm: int = 0o644
    data: bytes = b""
    target: str = ""  # symlink target
    rdev: tuple[int, int] = (0, 0)  # device major, minor

    def __post_init__(self) -> None:
        p = self.path
        if not p or p.startswith("/") or posixpath.normpath(p) != p or p == ".":
            raise BuildError(f"cpio path {p!r} is not a normalised relative path")
        if ".." in p.split("/") or "\0" in p:
            raise BuildError(f"cpio path {p!r} escapes the root")
        if not 0 <= self.perm <= 0o7777:
            raise BuildError(f"cpio {p}: permission {self.perm:o} out of range")
        if self.kind is not Kind.FILE and self.data:
            raise BuildError(f"cpio {p}: only regular files carry data")
        if (self.kind is Kind.SYMLINK) != bool(self.target):
            raise BuildError(f"cpio {p}: a symlink, and only a symlink, has a target")
        if self.kind not in (Kind.CHAR, Kind.BLOCK) and self.rdev != (0, 0):
            raise BuildError(f"cpio {p}: only device nodes have a device number")

    @property
    def mode(self) -> int:
        return self.kind.value | self.perm

    @property
    def body(self) -> bytes:
        return self.target.encode() if self.kind is Kind.SYMLINK else self.data


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _header(ino: int, mode: int, nlink: int, mtime: int, size: int,
            rdev: tuple[int, int], namesize: int) -> bytes:
    fields = (ino, mode, 0, 0, nlink, mtime, size, 0, 0, rdev[0], rdev[1], namesize, 0)
    for value in fields:
        if not 0 <= value <= 0xFFFFFFFF:
            raise BuildError(f"cpio field {value} does not fit in 32 bits")
    return MAGIC + b"".join(b"%08X" % v for v in fields)


def by_path(entry: Entry) -> tuple[int, str]:
    return (0, entry.path)


def encode(entries: Iterable[Entry], mtime: int = 0,
           key: Callable[[Entry], tuple[int, str]] = by_path) -> bytes:
    """The archive, entries sorted by `key`, ending with the trailer. The
    kernel creates each entry as it comes, so a key must put a directory
    before what is in it (sorting by path does)."""
    ordered = sorted(entries, key=key)
    out: list[bytes] = []
    seen: set[str] = set()
    for ino, entry in enumerate(ordered, start=1):
        if entry.path in seen:
            raise BuildError(f"cpio path {entry.path} given twice")
        seen.add(entry.path)
        name = entry.path.encode() + b"\0"
        body = entry.body
        nlink = 2 if entry.kind is Kind.DIR else 1
        head = _header(ino, entry.mode, nlink, mtime, len(body), entry.rdev, len(name))
        out += [head, name, _pad4(HEADER_SIZE + len(name)), body, _pad4(len(body))]
    name = TRAILER.encode() + b"\0"
    out += [_header(0, 0, 1, 0, 0, (0, 0), len(name)), name, _pad4(HEADER_SIZE + len(name))]
    return b"".join(out)


def decode(data: bytes) -> tuple[Entry, ...]:
    """Read a whole archive written by `encode` (or any plain newc archive).

    Anything after the trailer must be NUL padding; a truncated or malformed
    archive raises FormatError.
    """
    entries: list[Entry] = []
    pos = 0
    while True:
        if len(data) - pos < HEADER_SIZE:
            raise FormatError(f"cpio truncated in a header at byte {pos}")
        head = data[pos:pos + HEADER_SIZE]
        if head[:6] != MAGIC:
            raise FormatError(f"cpio bad magic {head[:6]!r} at byte {pos}")
        if not all(c in _HEX for c in head[6:]):
            raise FormatError(f"cpio header at byte {pos} is not hex")
        f = [int(head[6 + 8 * i:14 + 8 * i], 16) for i in range(_FIELDS)]
        mode, size, namesize = f[1], f[6], f[11]
        name_start = pos + HEADER_SIZE
        body_start = name_start + namesize + (-(HEADER_SIZE + namesize) % 4)
        body_end = body_start + size
        if namesize == 0 or body_end > len(data):
            raise FormatError(f"cpio member at byte {pos} runs past the end")
        raw_name = data[name_start:name_start + namesize]
        if raw_name[-1:] != b"\0" or b"\0" in raw_name[:-1]:
            raise FormatError(f"cpio name at byte {pos} is not NUL-terminated")
        try:
            name = raw_name[:-1].decode()
        except UnicodeDecodeError as exc:
            raise FormatError(f"cpio name at byte {pos} is not UTF-8") from exc
        body = data[body_start:body_end]
        pos = body_end + (-size % 4)
        if pos > len(data):
            raise FormatError("cpio padding runs past the end")
        if name == TRAILER:
            break
        entries.append(_entry(name, mode, body, (f[9], f[10])))
    if data[pos:].strip(b"\0"):
        raise FormatError(f"cpio has {len(data) - pos} bytes of data after the trailer")
    return tuple(entries)


def _entry(name: str, mode: int, body: bytes, rdev: tuple[int, int]) -> Entry:
    try:
        kind = Kind(stat.S_IFMT(mode))
    except ValueError as exc:
        raise FormatError(f"cpio {name}: unsupported file type {mode:o}") from exc
    perm = stat.S_IMODE(mode)
    try:
        if kind is Kind.SYMLINK:
            return Entry(name, kind, perm, target=body.decode())
        if kind is Kind.FILE:
            return Entry(name, kind, perm, data=body)
        if body:
            raise FormatError(f"cpio {name}: a {kind.name.lower()} carries data")
        return Entry(name, kind, perm, rdev=rdev if kind in (Kind.CHAR, Kind.BLOCK) else (0, 0))
    except (BuildError, UnicodeDecodeError) as exc:
        raise FormatError(f"cpio member {name!r} is invalid: {exc}") from exc


class Tree:
    """A set of entries being assembled; parents are created as 0755 directories."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}

    def add(self, entry: Entry) -> None:
        parent = posixpath.dirname(entry.path)
        if parent:
            self.mkdir(parent)
        old = self._entries.get(entry.path)
        if old is not None and old != entry:
            raise BuildError(f"initramfs path {entry.path} added twice with different content")
        self._entries[entry.path] = entry

    def mkdir(self, path: str, perm: int = 0o755) -> None:
        old = self._entries.get(path)
        if old is not None:
            if old.kind is not Kind.DIR:
                raise BuildError(f"initramfs path {path} is both a directory and a file")
            return
        self.add(Entry(path, Kind.DIR, perm))

    def __contains__(self, path: str) -> bool:
        return path in self._entries

    def entries(self) -> tuple[Entry, ...]:
        return tuple(sorted(self._entries.values(), key=lambda e: e.path))
