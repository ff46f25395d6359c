"""The block cache: a directory (tmpfs for RAM, or a disk), bounded, LRU.

Layout: DIR/<id[:2]>/<id>, each file a checksummed entry (`cache.entry`).
Writes go to a temporary name, then rename, so a crash leaves whole entries
or none; a disk cache (`durable=True`) also fsyncs. Every read re-checks the
entry; a corrupt one is deleted and the block fetched again. Concurrent
readers of a missing block share one fetch. Several processes may share one
directory (a second mount of an image); each bounds what it adds, and a file
another process evicted is simply a miss.

A cache in the node's RAM (tmpfs or ramfs, its directory writable by this
user alone) is `trusted`: it cannot outlive the boot, and only `put` writes
it, after the caller verified the block; so its entries need no second hash
(one BLAKE2b per block per boot) and no checksum (RAM, like the process's
own), and it may hold a block `decoded` (a FUSE mount's: a later mount maps
it and serves it as it is). Anywhere else (a disk, any medium another boot or
user could change) every read is checksummed and the reader hashes what it
decodes.
"""

from __future__ import annotations

import copy
import ctypes
import mmap
import os
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import trio

from zosnode.atomicfile import TMP_PREFIX, open_atomic
from zosnode.cache import entry
from zosnode.cache.errors import CacheUsageError, CorruptEntry
from zosnode.cache.lru import LruIndex
from zosnode.layout import is_hex_id, sharded

SEED = 0x7A6F736E6F6465
T = TypeVar("T")
_RAM_FS = (0x01021994, 0x858458F6)  # statfs f_type of tmpfs and ramfs
# A trusted cache maps an entry this big or more (`_read`); a smaller one is read.
MAP_FROM = 256 * 1024
# A block as read: bytes, or a trusted cache's mapped file (`BlockCache.trusted`).
Block = bytes | memoryview


def in_node_ram(path: Path) -> bool:
    """Whether `path` is a directory in RAM that only this user may write."""
    buf = ctypes.create_string_buffer(256)  # struct statfs; f_type comes first
    if ctypes.CDLL(None, use_errno=True).statfs(os.fsencode(path), buf) != 0:
        return False
    st = os.stat(path)
    return (struct.unpack_from("l", buf)[0] in _RAM_FS and st.st_uid == os.geteuid()
            and not st.st_mode & 0o022)


@dataclass
class CacheStats:
    """This process's counts since the cache was opened. A corrupt entry is also a
    miss (it is dropped and fetched again); a fetch is one call of `fetch()`, and a
    write error a fetched block the medium would not keep (the read still got it);
    discarded, an entry whose fast checksum held but a later check (its BLAKE2b id)
    refused: rewritten on purpose, since an accident fails the checksum."""

    hits: int = 0
    misses: int = 0
    fetches: int = 0
    corrupt: int = 0
    evictions: int = 0
    write_errors: int = 0
    discarded: int = 0


class BlockCache:
    def __init__(
        self, directory: str | os.PathLike[str], max_bytes: int, *, durable: bool = False
    ) -> None:
        self.path = Path(directory)
        self._dir = os.fspath(self.path)
        self.durable = durable
        self.stats = CacheStats()
        self._lru = LruIndex(max_bytes)
        # Fixed, so every process sharing the directory reads the same sums.
        self._seed = SEED
        self._inflight = Flights()
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.trusted = in_node_ram(self.path)
        self._adopt_existing()

    @property
    def max_bytes(self) -> int:
        return self._lru.max_bytes

    @property
    def used_bytes(self) -> int:
        return self._lru.used

    def _name(self, block_id: str) -> str:
        if not is_hex_id(block_id):
            raise CacheUsageError(f"not a block id: {block_id!r}")
        return f"{self._dir}/{sharded(block_id)}"

    def _file(self, block_id: str) -> Path:
        return Path(self._name(block_id))

    def _adopt_existing(self) -> None:
        # Entries from an earlier run count towards the bound, oldest first;
        # their checksums are checked when they are read.
        found: list[tuple[float, str, int]] = []
        for shard in self.path.iterdir():
            if not shard.is_dir() or len(shard.name) != 2:
                continue
            for f in shard.iterdir():
                if f.name.startswith(TMP_PREFIX):
                    f.unlink(missing_ok=True)
                elif is_hex_id(f.name):
                    st = f.stat()
                    found.append((st.st_mtime, f.name, st.st_size))
        for _, name, size in sorted(found):
            for old in self._lru.add(name, size):
                self._unlink(old)

    def __contains__(self, block_id: str) -> bool:
        """Whether this process holds the block (no read, no check)."""
        return block_id in self._lru

    def get(self, block_id: str, decoded: bool = False) -> Block | None:
        """The cached block, checked; None if absent or found corrupt (then dropped).
        `decoded`: of a decoded entry (a trusted cache's)."""
        return self._account_read(block_id, self._read(block_id, decoded))

    async def get_async(self, block_id: str, decoded: bool = False) -> Block | None:
        """`get` (`decoded`: of a decoded entry), the file read in a worker thread
        (in RAM: at once, as a thread hop would cost more than the read)."""
        if self.trusted:
            return self._account_read(block_id, self._read(block_id, decoded))
        found = await trio.to_thread.run_sync(self._read, block_id, decoded)
        return self._account_read(block_id, found)

    async def get_checked(
        self, block_id: str, check: Callable[[Block], T | None],
        limiter: trio.CapacityLimiter | None = None,
    ) -> T | None:
        """`check(block)` of the cached block, in the worker thread that read it
        (one thread hop: read, checksum, then the caller's hash and decode).
        None if absent, corrupt, or refused by `check` (then dropped too)."""

        def work() -> tuple[Block | CorruptEntry | None, T | None]:
            found = self._read(block_id)
            if found is None or isinstance(found, CorruptEntry):
                return found, None
            value = check(found)
            if value is None:
                return CorruptEntry(f"cache entry {block_id}: refused by its check"), None
            return found, value

        found, value = await trio.to_thread.run_sync(work, limiter=limiter)
        self._account_read(block_id, found)
        return value

    def _read(self, block_id: str, decoded: bool = False) -> Block | CorruptEntry | None:
        # Thread-safe: touches only the file, never the index or the stats.
        if decoded and not self.trusted:
            raise CacheUsageError("only a trusted cache holds decoded blocks")
        try:
            fd = os.open(self._name(block_id), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            # One read takes a small entry whole; a large one in RAM is mapped:
            # the RAM's own pages, no copy, no fresh memory (writers replace a
            # file by a rename, never change it, so the bytes stay).
            data = os.read(fd, MAP_FROM)
            block: Block
            if len(data) < MAP_FROM:
                header, block = data[: entry.HEADER], data[entry.HEADER :]
            elif self.trusted:
                mapped = memoryview(mmap.mmap(fd, 0, prot=mmap.PROT_READ,
                                              flags=mmap.MAP_SHARED | mmap.MAP_POPULATE))
                header, block = data[: entry.HEADER], mapped[entry.HEADER :]
            else:
                header, block = data[: entry.HEADER], os.pread(fd, os.fstat(fd).st_size,
                                                               entry.HEADER)
        finally:
            os.close(fd)
        magic = header[: len(entry.MAGIC)]
        if self.trusted and magic in (entry.MAGIC, entry.DECODED):
            # Trusted: no checksum. The other form is a miss, replaced by the fetch.
            return block if magic == (entry.DECODED if decoded else entry.MAGIC) else None
        try:
            return entry.check(self._seed, block_id, header, block)
        except CorruptEntry as exc:
            return exc

    def _account_read(
        self, block_id: str, found: Block | CorruptEntry | None
    ) -> Block | None:
        if found is None:
            self._lru.remove(block_id)
            self.stats.misses += 1
            return None
        if isinstance(found, CorruptEntry):
            self.stats.corrupt += 1
            self.stats.misses += 1
            self._lru.remove(block_id)
            self._unlink(block_id)
            return None
        self.stats.hits += 1
        self._lru.touch(block_id)
        return found

    def put(self, block_id: str, block: Block) -> None:
        """Store a block the caller has verified against its id."""
        self._account_write(block_id, self._write(block_id, block))

    async def put_async(self, block_id: str, block: Block, decoded: bool = False) -> None:
        """`put` (`decoded`: the block decoded), with the file write in a worker thread."""
        size = await trio.to_thread.run_sync(self._write, block_id, block, decoded)
        self._account_write(block_id, size)

    def _write(self, block_id: str, block: Block, decoded: bool = False) -> int | None:
        # Thread-safe: touches only files, never the index or the stats.
        if decoded and not self.trusted:
            raise CacheUsageError("only a trusted cache holds decoded blocks")
        path = self._file(block_id)
        if len(block) + entry.HEADER > self._lru.max_bytes:
            return None
        path.parent.mkdir(exist_ok=True)
        with open_atomic(path, mode=0o600, durable=self.durable) as f:
            f.write((entry.DECODED if decoded else entry.MAGIC) + entry.checksum(self._seed, block))
            f.write(block)
        return len(block) + entry.HEADER

    def _account_write(self, block_id: str, size: int | None) -> None:
        if size is None:
            return
        for old in self._lru.add(block_id, size):
            self._unlink(old)
            self.stats.evictions += 1

    def discard(self, block_id: str) -> None:
        """Drop an entry a later check refused."""
        self.stats.discarded += 1
        self._lru.remove(block_id)
        self._unlink(block_id)

    def _unlink(self, block_id: str) -> None:
        self._file(block_id).unlink(missing_ok=True)

    async def get_or_fetch(
        self, block_id: str, fetch: Callable[[], Awaitable[Block]], *, looked: bool = False,
        decoded: bool = False,
    ) -> Block:
        """The block from the cache, else from `fetch()` (verified by it), fetched
        once (`Flights`). `looked`: the caller has just found it missing;
        `decoded`: the block decoded (a trusted cache's form for FUSE mounts)."""

        async def work() -> Block:
            self.stats.fetches += 1
            block = await fetch()
            try:
                await self.put_async(block_id, block, decoded)
            except OSError:
                # A full or failing cache medium costs a refetch later, not this read.
                self.stats.write_errors += 1
            return block

        return await self._inflight.run(f"{block_id}/{decoded}", work,
                                        partial(self.get_async, block_id, decoded), looked=looked)


class Flights:
    """Work in progress per block (a fetch here, a decode in `fetch.source`).

    Readers that arrive while a block's work runs wait for it and share its
    outcome: its block, or its failure, raised in every one of them at once
    (each trying again would put them in a queue, one deadline each). Only if
    the working reader was cancelled does a waiter look and work again.
    """

    def __init__(self) -> None:
        self._running: dict[str, _Flight] = {}

    async def run(self, key: str, work: Callable[[], Awaitable[Block]],
                  look: Callable[[], Awaitable[Block | None]], *, looked: bool = False) -> Block:
        """`look()`'s block if it has one (skipped first when `looked`), else `work()`'s."""
        while True:
            if not looked and (found := await look()) is not None:
                return found
            looked = False
            flight = self._running.get(key)
            if flight is None:
                break
            await flight.done.wait()
            if flight.result is not None:
                return flight.result
            if flight.error is not None:
                raise own_copy(flight.error)
        flight = self._running[key] = _Flight()
        try:
            flight.result = await work()
            return flight.result
        except Exception as exc:
            flight.error = exc
            raise
        finally:
            del self._running[key]
            flight.done.set()


class _Flight:
    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: Block | None = None
        self.error: Exception | None = None


def own_copy(exc: Exception) -> Exception:
    """A waiter's own instance of the shared failure: one instance raised in
    several tasks would collect all their tracebacks and contexts."""
    try:
        return copy.copy(exc)
    except Exception:  # noqa: BLE001 - an exception type copy cannot rebuild
        return exc
