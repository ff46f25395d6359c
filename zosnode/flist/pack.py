"""Turn a finished tree into an flist and its blocks.

Small files are packed end to end into shared blocks so reading an image does
not cost one request per file; a pack is cut after a file whose content hash
has its low bits zero (once the pack is past a minimum), or at a maximum. Cuts
therefore depend on content, not on position, and a file added or changed in
a new version disturbs only the pack it lands in. Large files are cut into
fixed-size chunks aligned to the file's own offsets; all-zero chunks become
holes. docs/flist-format.md records the measurements behind the sizes.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from zosnode.flist.blocks import MAX_BLOCK_SIZE, BlockRef, Compression
from zosnode.flist.errors import FlistInputError
from zosnode.flist.format import Entry, Extent, Flist, Hole, Kind
from zosnode.flist.tree import Node, Tree
from zosnode.flist.writer import EncodedBlock, encode_block


@dataclass(frozen=True)
class BuildOptions:
    compression: Compression = Compression.ZLIB
    encrypt: bool = False
    chunk_size: int = 1024 * 1024
    small_max: int = 128 * 1024
    pack_min: int = 256 * 1024
    pack_max: int = 1024 * 1024
    # A pack is cut after a file whose hash is 0 modulo this (past pack_min).
    pack_divisor: int = 64

    def __post_init__(self) -> None:
        if not 4096 <= self.chunk_size <= MAX_BLOCK_SIZE:
            raise FlistInputError(f"chunk size must be 4 KiB..{MAX_BLOCK_SIZE} bytes")
        if not 0 <= self.small_max <= self.pack_min <= self.pack_max:
            raise FlistInputError("need small_max <= pack_min <= pack_max")
        if self.pack_max + self.small_max > MAX_BLOCK_SIZE:
            raise FlistInputError("pack_max + small_max must stay under the block size cap")
        if self.pack_divisor < 1:
            raise FlistInputError("pack divisor must be at least 1")


@dataclass
class BuildStats:
    """What a build read and stored: `new_*` is what the store lacked, `reused_bytes`
    what it held already; `skipped` names what an image cannot hold (sockets)."""

    entries: int = 0
    files: int = 0
    file_bytes: int = 0
    blocks: int = 0
    new_blocks: int = 0
    new_bytes: int = 0
    reused_bytes: int = 0
    skipped: list[str] = field(default_factory=list)


# Sink: store one encoded block, return True if it was not there before.
Sink = Callable[[EncodedBlock], bool]
Progress = Callable[[BuildStats], None]


class _Held:
    """A block being encoded on a worker thread; `block` is set once it is stored."""

    __slots__ = ("future", "block")

    def __init__(self, future: Future[EncodedBlock]) -> None:
        self.future = future
        self.block: EncodedBlock | None = None


class _Slot:
    """A file's bytes at `offset` in a block that may not be encoded yet."""

    __slots__ = ("offset", "length", "held")

    def __init__(self, offset: int, length: int) -> None:
        self.offset, self.length = offset, length
        self.held: _Held | None = None


class Packer:
    """Packs file bytes into blocks; compression and encryption run on worker
    threads (zlib, lzma, bz2, hashing and NaCl release the GIL), stores and
    statistics stay on the caller's thread, in block order."""

    def __init__(self, options: BuildOptions, sink: Sink, progress: Progress | None = None,
                 workers: int | None = None):
        self.o = options
        self.sink = sink
        self.progress = progress
        self.stats = BuildStats()
        self._pack = bytearray()
        self._open: list[_Slot] = []
        self._small: dict[bytes, _Slot] = {}
        self._seen_blocks: set[str] = set()
        self._workers = workers or min(4, os.cpu_count() or 1)
        self._pool = ThreadPoolExecutor(max_workers=self._workers)
        self._inflight: deque[_Held] = deque()

    def _store(self, held: _Held) -> None:
        block = held.block = held.future.result()
        if block.id in self._seen_blocks:
            return
        self._seen_blocks.add(block.id)
        self.stats.blocks += 1
        if self.sink(block):
            self.stats.new_blocks += 1
            self.stats.new_bytes += len(block.stored)
        else:
            self.stats.reused_bytes += len(block.stored)
        if self.progress is not None:
            self.progress(self.stats)

    def _emit(self, decoded: bytes) -> _Held:
        held = _Held(
            self._pool.submit(encode_block, decoded, self.o.compression, self.o.encrypt)
        )
        self._inflight.append(held)
        # Bounded: at most a few blocks in memory ahead of the store.
        while len(self._inflight) > 2 * self._workers:
            self._store(self._inflight.popleft())
        return held

    def _cut(self) -> None:
        if not self._pack:
            return
        held = self._emit(bytes(self._pack))
        for slot in self._open:
            slot.held = held
        self._pack.clear()
        self._open.clear()

    def add_small(self, data: bytes) -> _Slot:
        digest = hashlib.blake2b(data, digest_size=16).digest()
        slot = self._small.get(digest)
        if slot is not None:
            return slot
        slot = _Slot(len(self._pack), len(data))
        self._pack += data
        self._open.append(slot)
        self._small[digest] = slot
        boundary = int.from_bytes(digest[:8], "little") % self.o.pack_divisor == 0
        if len(self._pack) >= self.o.pack_max or (
            boundary and len(self._pack) >= self.o.pack_min
        ):
            self._cut()
        return slot

    def add_large(self, read: Callable[[int], bytes], size: int) -> list[Extent | _Slot]:
        out: list[Extent | _Slot] = []
        pos = 0
        while pos < size:
            want = min(self.o.chunk_size, size - pos)
            chunk = _read_exactly(read, want)
            if chunk.count(0) == len(chunk):
                prev = out[-1] if out else None
                if isinstance(prev, Hole):
                    out[-1] = Hole(prev.length + want)
                else:
                    out.append(Hole(want))
            else:
                slot = _Slot(0, want)
                slot.held = self._emit(chunk)
                out.append(slot)
            pos += want
        return out

    def finish(self) -> None:
        self._cut()
        while self._inflight:
            self._store(self._inflight.popleft())

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _read_exactly(read: Callable[[int], bytes], n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        b = read(n - got)
        if not b:
            raise FlistInputError("a file got shorter while it was being read")
        parts.append(b)
        got += len(b)
    return b"".join(parts)


def _resolve(x: Extent | _Slot) -> Extent:
    if isinstance(x, _Slot):
        assert x.held is not None and x.held.block is not None
        return x.held.block.ref(x.offset, x.length)
    return x


def build(
    tree: Tree,
    sink: Sink,
    options: BuildOptions | None = None,
    *,
    metadata: dict[str, Any] | None = None,
    prefetch_paths: Sequence[bytes] = (),
    progress: Progress | None = None,
) -> tuple[Flist, BuildStats]:
    """Pack `tree` into blocks (handed to `sink`) and return the flist describing it."""
    packer = Packer(options or BuildOptions(), sink, progress)
    try:
        return _build(packer, tree, metadata, prefetch_paths)
    finally:
        packer.close()


def _build(
    packer: Packer, tree: Tree, metadata: dict[str, Any] | None, prefetch_paths: Sequence[bytes]
) -> tuple[Flist, BuildStats]:
    stats = packer.stats
    rows: list[dict[str, Any]] = []
    first_index: dict[int, int] = {}
    paths: dict[bytes, int] = {}

    # Pre-order, names sorted as bytes: the order is the tree's, never the source's.
    stack: list[tuple[int | None, bytes, Node, bytes]] = [(None, b"", tree.root, b"/")]
    while stack:
        parent, name, node, path = stack.pop()
        index = len(rows)
        paths[path] = index
        row: dict[str, Any] = {"index": index, "parent": parent, "name": name}
        stats.entries += 1
        if node.kind is not Kind.DIR and id(node) in first_index:
            row.update(kind=Kind.HARDLINK, link=first_index[id(node)])
            rows.append(row)
            continue
        first_index[id(node)] = index
        row.update(
            kind=node.kind, mode=node.mode & 0o7777, uid=node.uid, gid=node.gid,
            mtime_ns=node.mtime_ns, xattrs=tuple(sorted(node.xattrs.items())),
        )
        if node.kind is Kind.REG:
            try:
                row["extents"] = _pack_file(packer, node)
            except OSError as exc:
                raise FlistInputError(
                    f"cannot read {path.decode(errors='replace')}: {exc.strerror or exc}"
                ) from None
            except FlistInputError as exc:
                raise FlistInputError(f"{path.decode(errors='replace')}: {exc}") from None
            stats.files += 1
            stats.file_bytes += node.content.size if node.content else 0
        elif node.kind is Kind.SYMLINK:
            row["target"] = node.target
        elif node.kind in (Kind.CHR, Kind.BLK):
            row["rdev"] = node.rdev
        rows.append(row)
        if node.kind is Kind.DIR:
            assert node.children is not None
            base = path if path.endswith(b"/") else path + b"/"
            for cname in sorted(node.children, reverse=True):
                stack.append((index, cname, node.children[cname], base + cname))
    packer.finish()

    entries = []
    for row in rows:
        if "extents" in row:
            row["extents"] = tuple(_resolve(x) for x in row["extents"])
        entries.append(Entry(**row))
    prefetch: list[str] = []
    for p in prefetch_paths:
        i = paths.get(p)
        if i is None:
            raise FlistInputError(f"prefetch path {p!r} is not in the image")
        e = entries[i]
        for x in entries[e.link].extents if e.link is not None else e.extents:
            if isinstance(x, BlockRef) and x.id not in prefetch:
                prefetch.append(x.id)
    return Flist(tuple(entries), tuple(prefetch), metadata or {}), stats


def _pack_file(packer: Packer, node: Node) -> list[Extent | _Slot]:
    content = node.content
    if content is None or content.size == 0:
        return []
    with content.opener() as f:
        if content.size <= packer.o.small_max:
            data = _read_exactly(f.read, content.size)
            if f.read(1):
                raise FlistInputError("a file grew while it was being read")
            if data.count(0) == len(data):
                return [Hole(len(data))]
            return [packer.add_small(data)]
        out = packer.add_large(f.read, content.size)
        if f.read(1):
            raise FlistInputError("a file grew while it was being read")
        return out
