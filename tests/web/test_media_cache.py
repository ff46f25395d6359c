"""The media cache: one build per key however many ask, LRU within its bounds,
a bounded number of builds at once, and 50 concurrent requests for distinct
farms against a live hub staying inside the bounds (files and bytes sampled
in the cache directory during and after), with memory measured."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import trio

from tests.web.conftest import WebHub, manifest, require_media_tools
from zosnode.bootmedia.ipxe import BootConfig
from zosnode.hub.web import media_cache
from zosnode.hub.web.media_cache import MediaBuildError, MediaCache

CFG = BootConfig(farm="f", channel="stable", hubs=("http://hub:1",))


class Counting:
    def __init__(self, size: int = 1000, delay: float = 0.05, fail: bool = False) -> None:
        self.calls = 0
        self.running = 0
        self.peak = 0
        self.size = size
        self.delay = delay
        self.fail = fail
        self._lock = threading.Lock()

    def __call__(self, cfg: BootConfig, out: Path) -> None:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            time.sleep(self.delay)
            if self.fail:
                raise OSError("no space left on device")
            out.write_bytes(cfg.farm.encode().ljust(self.size, b"."))
        finally:
            with self._lock:
                self.running -= 1


def key(i: int) -> str:
    return f"{i:032x}"


def cache(tmp_path: Path, builder: Counting, **kw: int) -> MediaCache:
    return MediaCache(tmp_path / "media", builders={"iso": builder}, **kw)


async def test_concurrent_requests_for_one_medium_build_it_once(tmp_path: Path) -> None:
    b = Counting()
    c = cache(tmp_path, b)
    got: list[bytes] = []

    async def one() -> None:
        got.append(await c.get(key(1), "iso", CFG))

    async with trio.open_nursery() as n:
        for _ in range(20):
            n.start_soon(one)
    assert b.calls == 1 and len(got) == 20 and len(set(got)) == 1
    assert c.stats().waits == 19
    assert await c.get(key(1), "iso", CFG) == got[0] and c.stats().hits == 1


async def test_lru_eviction_keeps_count_and_bytes_bounds(tmp_path: Path) -> None:
    b = Counting(size=1000)
    c = cache(tmp_path, b, max_files=3, max_bytes=2500, max_builds=1)
    for i in range(3):
        await c.get(key(i), "iso", CFG)
    # 3 x 1000 bytes is over 2500: the oldest went as soon as the third came.
    assert sorted(os.listdir(c.directory)) == [key(1), key(2)]
    await c.get(key(1), "iso", CFG)  # a hit: now the most recent
    await c.get(key(3), "iso", CFG)
    assert sorted(os.listdir(c.directory)) == [key(1), key(3)]
    assert c.stats().files == 2 and c.stats().bytes == 2000 and b.calls == 4
    big = cache(tmp_path / "big", Counting(size=5000), max_bytes=2500)
    assert len(await big.get(key(9), "iso", CFG)) == 5000  # served, not kept
    assert os.listdir(big.directory) == []


async def test_builds_run_in_threads_at_most_max_builds_at_once(tmp_path: Path) -> None:
    b = Counting(delay=0.2)
    c = cache(tmp_path, b, max_builds=2)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await trio.sleep(0.01)
            ticks += 1

    async with trio.open_nursery() as n:
        n.start_soon(ticker)
        async with trio.open_nursery() as builds:
            for i in range(6):
                builds.start_soon(c.get, key(i), "iso", CFG)
        n.cancel_scope.cancel()
    assert b.calls == 6 and b.peak == 2
    assert ticks > 30  # the loop kept running while 0.6 s of builds ran
    print(f"event loop ticks during 6 builds of 0.2 s, 2 at a time: {ticks}")


async def test_a_failed_build_fails_every_waiter_and_is_not_kept(tmp_path: Path) -> None:
    b = Counting(fail=True)
    c = cache(tmp_path, b)
    errors: list[str] = []

    async def one() -> None:
        try:
            await c.get(key(1), "iso", CFG)
        except MediaBuildError as exc:
            errors.append(str(exc))

    async with trio.open_nursery() as n:
        for _ in range(5):
            n.start_soon(one)
    assert len(errors) == 5 and "no space left" in errors[0] and b.calls == 1
    assert os.listdir(c.directory) == [] and c.stats().files == 0


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def test_50_concurrent_requests_for_distinct_farms_stay_in_the_bounds(
        web_hub: WebHub, tmp_path: Path) -> None:
    require_media_tools()
    web_hub.publish(manifest("stable", 1))
    max_files, max_bytes = 8, 16 * 1024 * 1024
    media = MediaCache(tmp_path / "bounded", max_files=max_files, max_bytes=max_bytes,
                       max_builds=2)
    web_hub.live.hub.app.web.media = media
    peak = {"files": 0, "bytes": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                sizes = [e.stat().st_size for e in os.scandir(media.directory)]
            except FileNotFoundError:
                sizes = []
            peak["files"] = max(peak["files"], len(sizes))
            peak["bytes"] = max(peak["bytes"], sum(sizes))
            time.sleep(0.02)

    results: dict[int, tuple[int, bytes]] = {}

    def fetch(i: int) -> None:
        status, _, body = web_hub.request(
            "GET", f"/media/download?farm=farm-{i:02d}&channel=stable&kind=iso")
        results[i] = (status, body)

    rss_before = _rss_kib("VmRSS")
    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    clients = [threading.Thread(target=fetch, args=(i,)) for i in range(50)]
    for t in clients:
        t.start()
    for t in clients:
        t.join(300)
    took = time.monotonic() - started
    done.set()
    sampler.join()
    ok = [i for i, (status, _) in results.items() if status == 200]
    busy = [i for i, (status, _) in results.items() if status == 503]
    assert len(results) == 50 and len(ok) + len(busy) == 50, {
        i: s for i, (s, _) in results.items()}
    for i in ok:
        assert f"zos.farm=farm-{i:02d} ".encode() in results[i][1]
    after = list(os.scandir(media.directory))
    size_limit = max_bytes + 2 * 4 * 1024 * 1024  # two builds being placed, ~2.3 MB each
    assert peak["files"] <= max_files and len(after) <= max_files
    assert peak["bytes"] <= size_limit and sum(e.stat().st_size for e in after) <= max_bytes
    assert not list(media.scratch.iterdir()) if media.scratch.exists() else True
    print(f"50 distinct ISOs: {len(ok)} served, {len(busy)} busy (503) in {took:.1f} s; "
          f"cache peak {peak['files']} files / {peak['bytes'] / 2**20:.1f} MiB "
          f"(bounds {max_files} / {max_bytes / 2**20:.0f} MiB); RSS {rss_before // 1024} -> "
          f"peak {_rss_kib('VmHWM') // 1024} MiB")
    assert len(ok) >= 25  # the build timeout (50 s) is generous even on 2 loaded cores


async def test_no_build_slot_in_time_is_busy_and_its_waiters_are_told(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(media_cache, "SLOT_WAIT_S", 0.3)
    b = Counting(delay=1.0)
    c = cache(tmp_path, b, max_builds=1)
    outcome: dict[str, str] = {}

    async def one(name: str, k: str) -> None:
        try:
            await c.get(k, "iso", CFG)
            outcome[name] = "ok"
        except media_cache.MediaBusy:
            outcome[name] = "busy"

    async with trio.open_nursery() as n:
        n.start_soon(one, "first", key(1))
        await trio.sleep(0.05)
        n.start_soon(one, "second", key(2))  # waits for the one slot: too long
        await trio.sleep(0.05)
        n.start_soon(one, "same as second", key(2))
    assert outcome == {"first": "ok", "second": "busy", "same as second": "busy"}
    assert b.calls == 1 and os.listdir(c.directory) == [key(1)]


async def test_a_build_whose_client_went_away_still_lands_in_the_cache(
        tmp_path: Path) -> None:
    b = Counting(delay=0.3)
    c = cache(tmp_path, b)
    with trio.move_on_after(0.05):
        await c.get(key(1), "iso", CFG)
    assert os.listdir(c.directory) == [key(1)] and c.stats().files == 1
    assert await c.get(key(1), "iso", CFG) and b.calls == 1


def test_a_hub_on_s3_keeps_its_media_in_a_directory_it_removes() -> None:
    # No data directory to keep built media beside: one of its own, gone at close
    # (it was a fixed /tmp/zosnode-media-<pid> that outlived the hub).
    from zosnode.hub.registry import Registry
    from zosnode.hub.registry_db import SqliteRegistry
    from zosnode.hub.s3 import S3Storage
    from zosnode.hub.web.site import WebSite

    site = WebSite(S3Storage("http://127.0.0.1:9", "bucket"),
                   Registry(SqliteRegistry(":memory:")), now=lambda: 0)
    where = site.media.directory
    assert where.is_dir() and where.name.startswith("zosnode-media-")
    (where / "leftover.iso").write_bytes(b"x")
    site.close()
    assert not where.exists()
