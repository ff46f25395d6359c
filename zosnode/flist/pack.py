"""Turn a finished tree into an flist and its blocks.

Small files are packed end to end into shared blocks so reading an image does
not cost one request per file; a pack is cut after a file whose content hash
has its low bits zero (once the pack is past a minimum), or at a maximum. Cuts
therefore depend on content, not on position, and a file added or changed in
a new version disturbs only the pack it lands in. Large files are cut where
their content says (FastCDC, `zosnode.flist.cdc`), so bytes inserted into a
file change only the chunks around them (files from 64 MiB to 4 GiB: finer
chunks, see BuildOptions); all-zero chunks become holes. The
fixed-offset cutting of format 1.0 stays available (`chunking="fixed"`).
docs/flist-format.md records the measurements behind the sizes.

Both cores: each block is compressed, encrypted, hashed (once: its id) and
stored on a worker thread (zstd, zlib, BLAKE2b, NaCl and file writes release
the GIL); reading the tree, cutting and the statistics stay on the caller's
thread, in block order, so the flist is the same whatever the threads did.
At most `2 * workers` blocks are in flight, which bounds memory.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal

from zosnode.flist.blocks import MAX_BLOCK_SIZE, BlockRef, Compression
from zosnode.flist.cdc import CdcSizes, cut
from zosnode.flist.errors import FlistInputError
from zosnode.flist.format import Entry, Extent, Flist, Hole, Kind
from zosnode.flist.tree import Node, Tree
from zosnode.flist.writer import EncodedBlock, encode_block

# Levels each codec accepts (none: only 0).
_LEVELS = {Compression.NONE: (0, 0), Compression.ZLIB: (0, 9), Compression.LZMA: (0, 9),
           Compression.BZ2: (1, 9), Compression.ZSTD: (-7, 22)}


# Where `flist create --fine-chunks` starts cutting large files finer.
FINE_FROM = 64 * 1024 * 1024


@dataclass(frozen=True)
class BuildOptions:
    compression: Compression = Compression.ZSTD
    encrypt: bool = False
    # None: the codec's measured default (zstd: writer.ZSTD_LEVEL).
    level: int | None = None
    # Large files: "cdc" cuts by content (cdc_min/avg/max), "fixed" at multiples
    # of chunk_size (format 1.0's layout).
    chunking: Literal["cdc", "fixed"] = "cdc"
    chunk_size: int = 1024 * 1024
    cdc_min: int = 256 * 1024
    cdc_avg: int = 1024 * 1024
    cdc_max: int = 4 * 1024 * 1024
    cdc_normalization: int = 1
    # Files of at least cdc_fine_from bytes (disk images, databases: what is
    # edited in place and shipped again) may be cut finer, so that an insertion
    # costs a node no more bytes than casync's 64 KiB chunks would (measured
    # in bench/flist.md: 8 / 48 / 256 KiB with NC 2 fetch 0.8x casync's bytes
    # at about casync's chunk count). Off by default (None; `flist create
    # --fine-chunks` sets FINE_FROM): a node fetches and checks a block per
    # request, so fine chunks cost reading the file about 20 times the requests
    # (bench/datapath.md: warm FUSE 1,041 -> 537 MB/s, cold 300 -> 65 MB/s). From
    # cdc_fine_below on, coarse again: fine chunks cost about 57 bytes of flist
    # each (1 MB per GiB, which a node fetches and decodes before it mounts) and
    # an flist holds at most format.MAX_BLOCKS blocks (a file at most
    # MAX_EXTENTS extents), which fine chunks would reach at about 57 GiB.
    cdc_fine_from: int | None = None
    cdc_fine_below: int = 4 * 1024 * 1024 * 1024
    cdc_fine_min: int = 8 * 1024
    cdc_fine_avg: int = 48 * 1024
    cdc_fine_max: int = 256 * 1024
    cdc_fine_normalization: int = 2
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
        if self.chunking not in ("cdc", "fixed"):
            raise FlistInputError(f"unknown chunking {self.chunking!r}")
        if self.cdc_max > MAX_BLOCK_SIZE:
            raise FlistInputError(f"content-defined chunks may not exceed {MAX_BLOCK_SIZE} bytes")
        if self.cdc_fine_from is not None and not (
                self.small_max < self.cdc_fine_from < self.cdc_fine_below):
            raise FlistInputError("need small_max < cdc_fine_from < cdc_fine_below")
        if self.cdc_fine_max > MAX_BLOCK_SIZE:
            raise FlistInputError(f"content-defined chunks may not exceed {MAX_BLOCK_SIZE} bytes")
        # Validated here, not at the first large file.
        self.cdc_sizes(0)
        CdcSizes(self.cdc_fine_min, self.cdc_fine_avg, self.cdc_fine_max,
                 self.cdc_fine_normalization)
        if self.level is not None:
            low, high = _LEVELS[self.compression]
            if not low <= self.level <= high:
                raise FlistInputError(
                    f"{self.compression.name.lower()} level {self.level} is outside "
                    f"{low}..{high}")

    def cdc_sizes(self, file_size: int) -> CdcSizes:
        """The content-defined sizes for a large file of `file_size` bytes."""
        if self.cdc_fine_from is not None and (
                self.cdc_fine_from <= file_size < self.cdc_fine_below):
            return CdcSizes(self.cdc_fine_min, self.cdc_fine_avg, self.cdc_fine_max,
                            self.cdc_fine_normalization)
        return CdcSizes(self.cdc_min, self.cdc_avg, self.cdc_max, self.cdc_normalization)


@dataclass
class BuildStats:
    """What a build read and stored: `new_*` is what the store lacked, `reused_bytes`
    what it held already; `skipped` names what an image cannot hold (sockets)."""

    entries: int = 0
    files: int = 0
    file_bytes: int = 0
    # What the whole tree holds (known before packing starts: for progress).
    total_files: int = 0
    total_bytes: int = 0
    read_bytes: int = 0  # of total_bytes, read so far (mid-file too)
    blocks: int = 0
    new_blocks: int = 0
    new_bytes: int = 0
    reused_bytes: int = 0
    skipped: list[str] = field(default_factory=list)


# Zeros this long inside a content-defined chunk are a hole, not stored bytes.
HOLE_MIN = 64 * 1024
_ZERO_RUN = bytes(HOLE_MIN)

# Sink: store one encoded block, return True if it was not there before. It
# runs on the packer's worker threads, at most once per block id per build.
Sink = Callable[[EncodedBlock], bool]
Progress = Callable[[BuildStats], None]


class _Claim:
    """The one store of a block id in a build, done by whichever worker got it first."""

    __slots__ = ("done", "new", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.new = False
        self.error: BaseException | None = None

    def wait(self) -> bool:
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.new


class _Held:
    """A block being encoded and stored on a worker thread. Once the caller's
    thread has accounted for it only `ref` is kept (a reference to the whole
    block), not its bytes: what a build holds is the blocks in flight."""

    __slots__ = ("future", "ref")

    def __init__(self, future: Future[tuple[EncodedBlock, _Claim]]) -> None:
        self.future: Future[tuple[EncodedBlock, _Claim]] | None = future
        self.ref: BlockRef | None = None


class _Slot:
    """A file's bytes at `offset` in a block that may not be encoded yet."""

    __slots__ = ("offset", "length", "held")

    def __init__(self, offset: int, length: int) -> None:
        self.offset, self.length = offset, length
        self.held: _Held | None = None


class Packer:
    """Packs file bytes into blocks; encoding and storing run on worker threads,
    statistics on the caller's thread, in block order (see the module doc)."""

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
        # Twice the cores: a worker waiting on its block's fsync leaves its core
        # to another one's compression (measured: 2 workers 1.96 s, 4 1.38 s,
        # 6 1.78 s for the Debian minbase tree on 2 cores).
        self._workers = workers or min(8, 2 * (os.cpu_count() or 1))
        self._pool = ThreadPoolExecutor(max_workers=self._workers)
        self._inflight: deque[_Held] = deque()
        # Equal blocks encoded at once on two threads are stored once.
        self._claims: dict[str, _Claim] = {}
        self._claims_lock = threading.Lock()

    def _work(self, decoded: bytes) -> tuple[EncodedBlock, _Claim]:
        """On a worker: encode (the block's one hash), then store it unless claimed."""
        block = encode_block(decoded, self.o.compression, self.o.encrypt, self.o.level)
        with self._claims_lock:
            claim = self._claims.get(block.id)
            if claim is not None:
                return block, claim
            claim = self._claims[block.id] = _Claim()
        try:
            claim.new = self.sink(block)
        except BaseException as exc:
            claim.error = exc
            raise
        finally:
            claim.done.set()
        return block, claim

    def _store(self, held: _Held) -> None:
        assert held.future is not None
        block, claim = held.future.result()
        held.future = None
        held.ref = block.ref(0, block.size)
        if block.id in self._seen_blocks:
            return
        self._seen_blocks.add(block.id)
        new = claim.wait()
        self.stats.blocks += 1
        if new:
            self.stats.new_blocks += 1
            self.stats.new_bytes += len(block.stored)
        else:
            self.stats.reused_bytes += len(block.stored)
        if self.progress is not None:
            self.progress(self.stats)

    def _emit(self, decoded: bytes) -> _Held:
        held = _Held(self._pool.submit(self._work, decoded))
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
        self.stats.read_bytes += len(data)
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

    def add_large(self, f: BinaryIO, size: int) -> list[Extent | _Slot]:
        out: list[Extent | _Slot] = []
        for chunk in self._chunks(f, size):
            self.stats.read_bytes += len(chunk)
            for zeros, piece in self._pieces(chunk):
                if zeros:
                    prev = out[-1] if out else None
                    if isinstance(prev, Hole):
                        out[-1] = Hole(prev.length + len(piece))
                    else:
                        out.append(Hole(len(piece)))
                else:
                    slot = _Slot(0, len(piece))
                    slot.held = self._emit(piece)
                    out.append(slot)
        return out

    def _pieces(self, chunk: bytes) -> Iterator[tuple[bool, bytes]]:
        """A chunk as (is zeros, bytes) runs: a fixed chunk whole; a content-defined
        one split at every run of at least HOLE_MIN zeros, which become holes (a
        zero run has no cut points, so a sparse region would otherwise be stored
        in the max-size chunks around it)."""
        if self.o.chunking == "fixed":
            yield chunk.count(0) == len(chunk), chunk
            return
        pos, n = 0, len(chunk)
        while pos < n:
            start = chunk.find(_ZERO_RUN, pos)
            if start < 0:
                yield False, chunk[pos:] if pos else chunk
                return
            if start > pos:
                yield False, chunk[pos:start]
            rest = chunk[start:]
            end = start + len(rest) - len(rest.lstrip(b"\0"))
            yield True, chunk[start:end]
            pos = end

    def _chunks(self, f: BinaryIO, size: int) -> Iterator[bytes]:
        if self.o.chunking == "cdc":
            yield from cut(f, size, self.o.cdc_sizes(size))
            return
        pos = 0
        while pos < size:
            want = min(self.o.chunk_size, size - pos)
            yield _read_exactly(f.read, want)
            pos += want

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
        assert x.held is not None and x.held.ref is not None
        return x.held.ref.slice(x.offset, x.length)
    return x


def build(
    tree: Tree,
    sink: Sink,
    options: BuildOptions | None = None,
    *,
    metadata: dict[str, Any] | None = None,
    prefetch_paths: Sequence[bytes] = (),
    progress: Progress | None = None,
    workers: int | None = None,
) -> tuple[Flist, BuildStats]:
    """Pack `tree` into blocks (handed to `sink`) and return the flist describing it.

    The flist does not depend on `workers` (default: twice the cores, at most 8)."""
    packer = Packer(options or BuildOptions(), sink, progress, workers)
    packer.stats.total_files, packer.stats.total_bytes = _totals(tree)
    if progress is not None:
        progress(packer.stats)
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


def _totals(tree: Tree) -> tuple[int, int]:
    """Regular files and their bytes, each inode once (hardlinks share one)."""
    seen: set[int] = set()
    files = size = 0
    stack = [tree.root]
    while stack:
        node = stack.pop()
        if node.kind is Kind.DIR:
            assert node.children is not None
            stack.extend(node.children.values())
        elif node.kind is Kind.REG and id(node) not in seen:
            seen.add(id(node))
            files += 1
            size += node.content.size if node.content else 0
    return files, size


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
                packer.stats.read_bytes += len(data)
                return [Hole(len(data))]
            return [packer.add_small(data)]
        out = packer.add_large(f, content.size)
        if f.read(1):
            raise FlistInputError("a file grew while it was being read")
        return out
