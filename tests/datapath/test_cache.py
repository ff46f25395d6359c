"""The block cache: checksums on every read, LRU bound, single-flight fetches."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import trio

from tests.datapath.conftest import cache_entry, read_entry
from zosnode.cache import entry
from zosnode.cache.errors import CacheUsageError, CorruptEntry
from zosnode.cache.lru import LruIndex
from zosnode.cache.store import SEED, BlockCache


def _block(n: int) -> tuple[str, bytes]:
    data = os.urandom(n)
    return hashlib.blake2b(data, digest_size=32).hexdigest(), data


def test_entry_roundtrip_and_every_flipped_byte_caught() -> None:
    bid, data = _block(64)
    enc = cache_entry(7, data)
    assert read_entry(7, bid, enc) == data
    for i in range(len(enc)):
        bad = bytearray(enc)
        bad[i] ^= 0x40
        with pytest.raises(CorruptEntry):
            read_entry(7, bid, bytes(bad))
    with pytest.raises(CorruptEntry):
        read_entry(7, bid, enc + b"x")  # trailing data
    with pytest.raises(CorruptEntry):
        read_entry(7, bid, enc[:-1])
    with pytest.raises(CorruptEntry):
        read_entry(8, bid, enc)  # another seed's sum


def test_lru_evicts_oldest_first() -> None:
    lru = LruIndex(100)
    assert lru.add("a", 40) == [] and lru.add("b", 40) == []
    lru.touch("a")
    assert lru.add("c", 40) == ["b"]
    assert lru.used == 80
    with pytest.raises(CacheUsageError):
        LruIndex(0)


def test_put_get(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path / "c", 1 << 20)
    bid, data = _block(1000)
    assert cache.get(bid) is None
    cache.put(bid, data)
    assert cache.get(bid) == data
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)
    # The entry on disk is what the tests' forger writes (tests.datapath.conftest).
    assert (tmp_path / "c" / bid[:2] / bid).read_bytes() == cache_entry(SEED, data)
    with pytest.raises(CacheUsageError):
        cache.get("../../x")


def test_flipped_bit_on_disk_is_caught_and_dropped(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path / "c", 1 << 20, durable=True)
    bid, data = _block(5000)
    cache.put(bid, data)
    f = tmp_path / "c" / bid[:2] / bid
    raw = bytearray(f.read_bytes())
    raw[entry.HEADER + 1234] ^= 0x08
    f.write_bytes(bytes(raw))
    assert cache.get(bid) is None
    assert cache.stats.corrupt == 1 and not f.exists()


async def test_flipped_bit_is_fetched_again(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path / "c", 1 << 20)
    bid, data = _block(5000)
    calls = []

    async def fetch() -> bytes:
        calls.append(1)
        return data

    assert await cache.get_or_fetch(bid, fetch) == data
    f = tmp_path / "c" / bid[:2] / bid
    raw = bytearray(f.read_bytes())
    raw[-1] ^= 0x01
    f.write_bytes(bytes(raw))
    assert await cache.get_or_fetch(bid, fetch) == data
    assert len(calls) == 2 and cache.stats.corrupt == 1


def test_full_cache_evicts_without_error(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path / "c", 50_000)
    ids = []
    for _ in range(20):
        bid, data = _block(10_000)
        cache.put(bid, data)
        ids.append(bid)
    assert cache.used_bytes <= 50_000
    files = [p for p in (tmp_path / "c").rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 50_000
    assert cache.stats.evictions == 16
    assert cache.get(ids[-1]) is not None and cache.get(ids[0]) is None


def test_block_bigger_than_cache_is_not_kept(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path / "c", 1000)
    bid, data = _block(5000)
    cache.put(bid, data)
    assert cache.get(bid) is None and cache.used_bytes == 0


def test_damaged_sum_over_good_block_is_dropped(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path / "c", 1 << 20)
    bid, data = _block(3000)
    cache.put(bid, data)
    f = tmp_path / "c" / bid[:2] / bid
    raw = bytearray(f.read_bytes())
    raw[len(entry.MAGIC)] ^= 0xFF
    f.write_bytes(bytes(raw))
    assert cache.get(bid) is None and cache.stats.corrupt == 1 and not f.exists()


def test_restart_adopts_entries_and_checks_them_fully(tmp_path: Path) -> None:
    bid, data = _block(3000)
    first = BlockCache(tmp_path / "c", 1 << 20)
    first.put(bid, data)
    (tmp_path / "c" / bid[:2] / ".tmp-leftover").write_bytes(b"half")
    second = BlockCache(tmp_path / "c", 1 << 20)
    assert second.used_bytes == first.used_bytes
    assert not (tmp_path / "c" / bid[:2] / ".tmp-leftover").exists()
    assert second.get(bid) == data
    assert second.get(bid) == data


async def test_concurrent_readers_share_one_fetch(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path / "c", 1 << 20)
    bid, data = _block(2000)
    calls = 0

    async def fetch() -> bytes:
        nonlocal calls
        calls += 1
        await trio.sleep(0.01)
        return data

    results: list[bytes | memoryview] = []

    async def reader() -> None:
        results.append(await cache.get_or_fetch(bid, fetch))

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(reader)
    assert calls == 1 and results == [data] * 10


async def test_failed_fetch_fails_every_waiter_at_once(tmp_path: Path) -> None:
    # Issue #19: waiters used to fetch again one after another, each paying
    # a whole deadline; they share the one failure now.
    cache = BlockCache(tmp_path / "c", 1 << 20)
    bid, data = _block(2000)
    calls = 0

    async def fetch() -> bytes:
        nonlocal calls
        calls += 1
        await trio.sleep(0.05)
        if calls == 1:
            raise OSError("first fetch fails")
        return data

    errors: list[tuple[float, Exception]] = []

    async def reader() -> None:
        try:
            await cache.get_or_fetch(bid, fetch)
        except OSError as exc:
            errors.append((trio.current_time(), exc))

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(reader)
    assert calls == 1 and len(errors) == 3
    # Together, each with its own instance.
    assert max(t for t, _ in errors) - min(t for t, _ in errors) < 0.01
    assert len({id(e) for _, e in errors}) == 3
    # A reader that comes later fetches anew.
    assert await cache.get_or_fetch(bid, fetch) == data and calls == 2


async def test_cancelled_fetch_lets_a_waiter_fetch(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path / "c", 1 << 20)
    bid, data = _block(2000)
    calls = 0
    in_flight = trio.Event()

    async def fetch() -> bytes:
        nonlocal calls
        calls += 1
        in_flight.set()
        await trio.sleep(0.05)
        return data

    results: list[bytes | memoryview] = []

    async def first() -> None:
        with trio.move_on_after(0.02):  # the fetching reader goes away
            await cache.get_or_fetch(bid, fetch)

    async def waiter() -> None:
        results.append(await cache.get_or_fetch(bid, fetch))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        await in_flight.wait()
        nursery.start_soon(waiter)
    assert results == [data] and calls == 2
