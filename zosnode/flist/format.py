"""The flist wire format 1, one canonical CBOR map (docs/flist-format.md): entries in pre-order,
each naming a parent before it (no cycles, no nesting). Decoding checks every limit first."""

import enum
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from zosnode import canonical, layout
from zosnode.flist.blocks import BlockRef, Compression, check_int
from zosnode.flist.errors import FormatError, UnsupportedVersionError

MAJOR, MINOR = 1, 1

MAX_METADATA = 64 * 1024 * 1024
MAX_ENTRIES = 1_000_000
MAX_BLOCKS = 1_000_000
MAX_NAME = 255
MAX_DEPTH = 128
MAX_PATH = 4096
MAX_TARGET = 4095
MAX_XATTRS = 64
MAX_XATTR_NAME = 255
MAX_XATTR_VALUE = 65536
MAX_EXTENTS = 1 << 20
MAX_FILE_SIZE = 1 << 44
MAX_META = 1024 * 1024
_U32, _I64 = 1 << 32, 1 << 63


# An entry's type, by its wire code 1..7 in this order (append only).
Kind = enum.IntEnum("Kind", "DIR REG SYMLINK HARDLINK CHR BLK FIFO")
_KINDS = {k.value: k for k in Kind}  # a lookup, not Kind(code): an enum call costs a microsecond


# The stat(2) file type of each kind (a hardlink is its target's).
TYPE_BITS = {Kind.DIR: stat.S_IFDIR, Kind.REG: stat.S_IFREG, Kind.SYMLINK: stat.S_IFLNK,
             Kind.CHR: stat.S_IFCHR, Kind.BLK: stat.S_IFBLK, Kind.FIFO: stat.S_IFIFO}


# The field that holds each kind's data (an entry's last wire field), if it has any.
_DATA = {Kind.REG: "extents", Kind.SYMLINK: "target", Kind.HARDLINK: "link",
         Kind.CHR: "rdev", Kind.BLK: "rdev"}
_NO_DATA = (("extents", ()), ("target", b""), ("link", None), ("rdev", 0))


@dataclass(frozen=True)
class Hole:
    """`length` zero bytes that are not stored anywhere (a sparse region)."""

    length: int

    def __post_init__(self) -> None:
        check_int("hole length", self.length, 1, MAX_FILE_SIZE + 1)


Extent = BlockRef | Hole


def check_name(name: bytes) -> None:
    if not isinstance(name, bytes):
        raise FormatError("a name must be bytes")
    if not name or name in (b".", b".."):
        raise FormatError(f"name {name!r} is not allowed")
    if b"/" in name or b"\0" in name:
        raise FormatError(f"name {name!r} contains '/' or NUL")
    if len(name) > MAX_NAME:
        raise FormatError(f"name of {len(name)} bytes is over {MAX_NAME}")


@dataclass(frozen=True)
class Entry:
    index: int
    parent: int | None
    name: bytes
    kind: Kind
    mode: int = 0
    uid: int = 0
    gid: int = 0
    mtime_ns: int = 0
    xattrs: tuple[tuple[bytes, bytes], ...] = ()
    extents: tuple[Extent, ...] = ()
    target: bytes = b""
    link: int | None = None
    rdev: int = 0
    size: int = field(init=False)

    def __post_init__(self) -> None:
        check_int("entry index", self.index, 0, MAX_ENTRIES)
        if self.index == 0:
            if self.parent is not None or self.name != b"" or self.kind is not Kind.DIR:
                raise FormatError("entry 0 must be the root directory, with no name or parent")
        else:
            check_int("parent", self.parent, 0, self.index)
            check_name(self.name)
        kind = self.kind
        if not isinstance(kind, Kind):
            raise FormatError(f"unknown entry type {kind!r}")
        check_int("mode", self.mode, 0, 0o10000)
        check_int("uid", self.uid, 0, _U32)
        check_int("gid", self.gid, 0, _U32)
        check_int("mtime", self.mtime_ns, -_I64, _I64)
        if self.xattrs:  # most entries have none: no lists to build
            if len(self.xattrs) > MAX_XATTRS:
                raise FormatError(f"more than {MAX_XATTRS} xattrs")
            for name, value in self.xattrs:
                if not isinstance(name, bytes) or not isinstance(value, bytes):
                    raise FormatError("xattr names and values are bytes")
                if not 0 < len(name) <= MAX_XATTR_NAME or b"\0" in name:
                    raise FormatError(f"bad xattr name {name!r}")
                if len(value) > MAX_XATTR_VALUE:
                    raise FormatError(f"xattr {name!r} value over {MAX_XATTR_VALUE} bytes")
            if [n for n, _ in self.xattrs] != sorted({n for n, _ in self.xattrs}):
                raise FormatError("xattrs must be sorted by name without duplicates")
        own = _DATA.get(kind)  # each kind carries its own data, and no other kind's
        for data, empty in _NO_DATA:
            if data != own and getattr(self, data) != empty:
                raise FormatError(f"a {kind.name.lower()} entry has no {data}")
        if len(self.extents) > MAX_EXTENTS:
            raise FormatError(f"more than {MAX_EXTENTS} extents")
        size = sum([x.length for x in self.extents])
        if size > MAX_FILE_SIZE:
            raise FormatError(f"file size {size} over {MAX_FILE_SIZE}")
        if kind is Kind.SYMLINK and (type(self.target) is not bytes or b"\0" in self.target
                                     or not 0 < len(self.target) <= MAX_TARGET):
            raise FormatError("a symlink target is 1..4095 bytes without NUL")
        if kind is Kind.HARDLINK:
            check_int("hardlink target", self.link, 0, self.index)
            if self.mode or self.uid or self.gid or self.mtime_ns or self.xattrs:
                raise FormatError("a hardlink carries no attributes of its own")
        if own == "rdev":
            check_int("rdev", self.rdev, 0, 1 << 64)
        object.__setattr__(self, "size", size)

    @property
    def ino(self) -> int:
        return self.index + 1


@dataclass(frozen=True)
class Flist:
    entries: tuple[Entry, ...]
    prefetch: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    minor: int = MINOR  # read at (unknowns kept in `metadata`): re-encoding gives its bytes

    def __post_init__(self) -> None:
        check_int("minor version", self.minor, 0, 1 << 64)
        if not 0 < len(self.entries) <= MAX_ENTRIES:
            raise FormatError(f"entry count {len(self.entries)} outside 1..{MAX_ENTRIES}")
        depth, plen = [0] * len(self.entries), [0] * len(self.entries)
        seen: set[tuple[int, bytes]] = set()
        for i, e in enumerate(self.entries):
            if e.index != i:
                raise FormatError(f"entry {i} says it is entry {e.index}")
            if e.parent is None:
                continue
            if self.entries[e.parent].kind is not Kind.DIR:
                raise FormatError(f"entry {i}'s parent is not a directory")
            key = (e.parent, e.name)
            if key in seen:
                raise FormatError(f"name {e.name!r} appears twice in one directory")
            seen.add(key)
            depth[i] = depth[e.parent] + 1
            plen[i] = plen[e.parent] + 1 + len(e.name)
            if depth[i] > MAX_DEPTH or plen[i] > MAX_PATH:
                raise FormatError(f"path of entry {i} is deeper or longer than allowed")
            if e.link is not None:  # a hardlink
                kind = self.entries[e.link].kind
                if kind in (Kind.DIR, Kind.HARDLINK):
                    raise FormatError(f"hardlink {i} points at a {kind.name.lower()}")
        if not isinstance(self.metadata, Mapping):
            raise FormatError("metadata must be a map")
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    def blocks(self) -> dict[str, BlockRef]:
        """Every distinct block, by id, in first-use order."""
        out: dict[str, BlockRef] = {}
        for e in self.entries:
            for x in e.extents:
                if isinstance(x, BlockRef) and x.id not in out:
                    out[x.id] = x
        return out


flist_id = layout.object_id


def decode(data: bytes) -> Flist:
    try:
        doc = canonical.loads(data, max_size=MAX_METADATA)
    except canonical.CanonicalError as exc:
        raise FormatError(f"flist is not canonical CBOR: {exc}") from None
    if not isinstance(doc, dict):
        raise FormatError("flist is not a CBOR map")
    version = doc.get("version")
    if not (isinstance(version, list) and len(version) == 2
            and all(type(v) is int and v >= 0 for v in version)):
        raise FormatError("flist has no [major, minor] version")
    if version[0] != MAJOR:
        raise UnsupportedVersionError(f"flist format {version[0]}.{version[1]} is not "
                                      f"supported (this reads {MAJOR}.x)")
    if set(doc) != _FIELDS:
        # Keys may be integers as well as text: name them by repr, never sort both.
        odd = sorted(repr(k) for k in set(doc) ^ _FIELDS)
        raise FormatError(f"flist has unexpected or missing fields: {', '.join(odd)}")
    try:
        return _decode_doc(doc, version[1])
    except (TypeError, ValueError, IndexError, KeyError) as exc:
        raise FormatError(f"malformed flist: {exc}") from None


_FIELDS = frozenset({"version", "blocks", "entries", "prefetch", "meta"})


def _list(what: str, value: object, n: int | None = None) -> Sequence[Any]:
    if not isinstance(value, list) or (n is not None and len(value) != n):
        raise FormatError(f"{what} must be a list" + (f" of {n}" if n is not None else ""))
    return value


def _decode_doc(doc: dict[str, Any], minor: int) -> Flist:
    wire_blocks = _list("blocks", doc["blocks"])
    if len(wire_blocks) > MAX_BLOCKS:
        raise FormatError(f"more than {MAX_BLOCKS} blocks")
    blocks: list[BlockRef] = []  # each a template: an extent's is it with its own slice
    for wb in wire_blocks:
        raw, stored_size, size, comp, key = _list("block", wb, 5)
        if not isinstance(raw, bytes) or len(raw) != 32:
            raise FormatError("a block id is 32 bytes")
        if type(comp) is not int or comp not in Compression._value2member_map_:
            raise FormatError(f"unknown compression code {comp!r}")
        blocks.append(BlockRef(raw.hex(), 0, 1, size, stored_size, Compression(comp), key))
    # Entry and extent counts before anything is built (Entry and Flist check them again).
    wire_entries = _list("entries", doc["entries"])
    if not 0 < len(wire_entries) <= MAX_ENTRIES:
        raise FormatError(f"entry count {len(wire_entries)} outside 1..{MAX_ENTRIES}")
    entries = []
    for i, we in enumerate(wire_entries):
        parent, name, kind, mode, uid, gid, mtime, xattrs, data = _list("entry", we, 9)
        if type(kind) is not int or kind not in _KINDS:
            raise FormatError(f"entry {i} has unknown type {kind!r}")
        k = _KINDS[kind]
        xa = () if xattrs == [] else tuple(tuple(_list("xattr", x, 2))
                                           for x in _list("xattrs", xattrs))
        own = _DATA.get(k)
        if k is Kind.REG:
            wext = _list("extents", data)
            if len(wext) > MAX_EXTENTS:
                raise FormatError(f"entry {i} has more than {MAX_EXTENTS} extents")
            exts: list[Extent] = []
            for wx in wext:
                bi, off, length = _list("extent", wx, 3)
                if bi is None:
                    check_int("hole offset", off, 0, 1)  # a hole has offset 0
                    exts.append(Hole(length))
                    continue
                check_int("block index", bi, 0, len(blocks))
                exts.append(blocks[bi].slice(off, length))
            data = tuple(exts)
        elif own is None and data is not None:
            raise FormatError(f"entry {i} of type {k.name} carries data")
        entries.append(Entry(index=i, parent=parent, name=name, kind=k, mode=mode, uid=uid,
                             gid=gid, mtime_ns=mtime, xattrs=xa, **({own: data} if own else {})))
    prefetch = []
    for bi in _list("prefetch", doc["prefetch"]):
        check_int("prefetch index", bi, 0, len(blocks))
        prefetch.append(blocks[bi].id)
    meta = doc["meta"]
    if not isinstance(meta, dict) or not all(isinstance(k, str) for k in meta):
        raise FormatError("meta must be a map with text keys")
    meta_size = len(canonical.dumps(meta))  # encode()'s cap: whatever decodes also encodes
    if meta_size > MAX_META:
        raise FormatError(f"free-form metadata of {meta_size} bytes is over {MAX_META}")
    flist = Flist(tuple(entries), tuple(prefetch), meta, minor)
    # The block table is the used blocks, once each, in first-use order: no second encoding.
    if list(flist.blocks()) != [b.id for b in blocks]:
        raise FormatError("the block table is not the used blocks, once each, in first-use order")
    return flist
