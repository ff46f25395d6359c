"""The block cache: DIR/<id[:2]>/<id>, checksummed entries (`cache.entry`), bounded, LRU.

Writes are atomic (`durable` also fsyncs); a corrupt entry is deleted and fetched again;
readers of a missing block share one fetch; processes sharing a directory each bound what
they add (an entry another evicted is a miss). A cache in RAM (tmpfs/ramfs, writable by
this user alone) is `trusted`: it cannot outlive the boot and holds only verified blocks,
so no checksum, no second hash, and blocks may be kept `decoded`. Elsewhere (a disk another
boot or user could change) every read is checksummed and the reader hashes it."""

import copy
import ctypes
import mmap
import os
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import trio

from zosnode.atomicfile import TMP_PREFIX, open_atomic
from zosnode.cache import entry
from zosnode.cache.errors import CacheUsageError, CorruptEntry
from zosnode.cache.lru import LruIndex
from zosnode.layout import is_hex_id, sharded

SEED = 0x7A6F736E6F6465  # fixed: every process sharing a directory reads the same sums
T = TypeVar("T")
_RAM_FS = (0x01021994, 0x858458F6)  # statfs f_type of tmpfs and ramfs
MAP_FROM = 256 * 1024  # a trusted cache maps an entry this big or more (`_read`)
Block = bytes | memoryview  # as read: bytes, or a trusted cache's mapped file


def in_node_ram(path: Path) -> bool:
    buf = ctypes.create_string_buffer(256)  # struct statfs; f_type comes first
    if ctypes.CDLL(None, use_errno=True).statfs(os.fsencode(path), buf) != 0:
        return False
    st = os.stat(path)
    return (struct.unpack_from("l", buf)[0] in _RAM_FS and st.st_uid == os.geteuid()
            and not st.st_mode & 0o022)


@dataclass
class CacheStats:
    """This process's counts (a corrupt entry is a miss too)."""

    hits: int = 0
    misses: int = 0
    fetches: int = 0
    corrupt: int = 0
    evictions: int = 0
    write_errors: int = 0
    discarded: int = 0  # checksum held, BLAKE2b not: rewritten on purpose (not an accident)


class BlockCache:
    def __init__(self, directory: str | os.PathLike[str], max_bytes: int, *,
                 durable: bool = False) -> None:
        self.path = Path(directory)
        self._dir = os.fspath(self.path)
        self.durable = durable
        self.stats = CacheStats()
        self._lru = LruIndex(max_bytes)
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

    def _adopt_existing(self) -> None:
        # An earlier run's entries count towards the bound, oldest first; read, checked.
        found: list[tuple[float, str, int]] = []
        for f in self.path.glob("??/*"):
            if f.name.startswith(TMP_PREFIX):
                f.unlink(missing_ok=True)
            elif is_hex_id(f.name):
                st = f.stat()
                found.append((st.st_mtime, f.name, st.st_size))
        for _, name, size in sorted(found):
            self._account_write(name, size)

    def __contains__(self, block_id: str) -> bool:
        """Whether this process holds the block (no read, no check)."""
        return block_id in self._lru

    def get(self, block_id: str, decoded: bool = False) -> Block | None:
        """The cached block, checked; None if absent or corrupt (then dropped)."""
        return self._account_read(block_id, self._read(block_id, decoded))

    async def get_checked(self, block_id: str, check: Callable[[Block], T | None],
                          limiter: trio.CapacityLimiter) -> T | None:
        """`check(block)` in the reading thread (one hop); None if absent, corrupt or refused."""

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
            # A small entry: one read; a large one in RAM: mapped, no copy, no read but its
            # header's (writers rename a new file in, never change one, so the bytes stay).
            size = os.fstat(fd).st_size
            block: Block
            if size < MAP_FROM:
                data = os.read(fd, size)
                header, block = data[: entry.HEADER], data[entry.HEADER :]
            elif self.trusted:
                mapped = mmap.mmap(fd, 0, prot=mmap.PROT_READ,
                                   flags=mmap.MAP_SHARED | mmap.MAP_POPULATE)
                header, block = mapped[: entry.HEADER], memoryview(mapped)[entry.HEADER :]
            else:
                header, block = os.pread(fd, entry.HEADER, 0), os.pread(fd, size, entry.HEADER)
        finally:
            os.close(fd)
        magic = header[: len(entry.MAGIC)]
        if self.trusted and magic in (entry.MAGIC, entry.DECODED):
            # Trusted: no checksum. The other form is a miss, replaced by the fetch.
            return block if magic == (entry.DECODED if decoded else entry.MAGIC) else None
        try:
            return entry.check(SEED, block_id, header, block)
        except CorruptEntry as exc:
            return exc

    def _account_read(self, block_id: str, found: Block | CorruptEntry | None) -> Block | None:
        if found is None or isinstance(found, CorruptEntry):
            self.stats.misses += 1
            self._lru.remove(block_id)
            if found is not None:
                self.stats.corrupt += 1
                self._unlink(block_id)
            return None
        self.stats.hits += 1
        self._lru.touch(block_id)
        return found

    def put(self, block_id: str, block: Block) -> None:
        """Store a block the caller has verified against its id."""
        self._account_write(block_id, self._write(block_id, block))

    def _write(self, block_id: str, block: Block, decoded: bool = False) -> int | None:
        # Thread-safe: touches only files, never the index or the stats.
        if decoded and not self.trusted:
            raise CacheUsageError("only a trusted cache holds decoded blocks")
        path = self._name(block_id)
        if len(block) + entry.HEADER > self._lru.max_bytes:
            return None
        Path(path).parent.mkdir(exist_ok=True)
        with open_atomic(path, mode=0o600, durable=self.durable) as f:
            f.write((entry.DECODED if decoded else entry.MAGIC) + entry.checksum(SEED, block))
            f.write(block)
        return len(block) + entry.HEADER

    def _account_write(self, block_id: str, size: int | None) -> None:
        if size is None:
            return
        for old in self._lru.add(block_id, size):
            self._unlink(old)
            self.stats.evictions += 1

    def discard(self, block_id: str) -> None:
        self.stats.discarded += 1
        self._lru.remove(block_id)
        self._unlink(block_id)

    def _unlink(self, block_id: str) -> None:
        Path(self._name(block_id)).unlink(missing_ok=True)

    async def get_or_fetch(self, block_id: str, fetch: Callable[[], Awaitable[Block]], *,
                           looked: bool = False, decoded: bool = False) -> Block:
        """From the cache, else from `fetch()` (which verifies it), once; `looked`: just missed."""

        async def look() -> Block | None:
            if self.trusted:  # in RAM the read costs less than a thread hop
                return self.get(block_id, decoded)
            found = await trio.to_thread.run_sync(self._read, block_id, decoded)
            return self._account_read(block_id, found)

        async def work() -> Block:
            self.stats.fetches += 1
            block = await fetch()
            try:
                size = await trio.to_thread.run_sync(self._write, block_id, block, decoded)
                self._account_write(block_id, size)
            except OSError:
                # A full or failing cache medium costs a refetch later, not this read.
                self.stats.write_errors += 1
            return block

        return await self._inflight.run(f"{block_id}/{decoded}", work, look, looked=looked)


class Flights:
    """Work in progress per block (a fetch, a decode): readers arriving meanwhile share its
    block or failure (each retrying would queue them, one deadline each); after a cancel, not."""

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
    """A waiter's own copy of a shared error (one raised in many tasks gathers every traceback)."""
    try:
        return copy.copy(exc)
    except Exception:  # noqa: BLE001 - an exception type copy cannot rebuild
        return exc
