"""The FUSE mount against a source tree, served by mirrors that may misbehave."""

from __future__ import annotations

import errno
import os
import random
import shutil
from pathlib import Path

import pytest
import trio

from tests.datapath.conftest import build_flist, make_tree
from tests.datapath.fuse import require_fuse, snapshot
from tests.lab.faulty_mirror import Fault, FaultyMirror
from tests.lab.nginx import nginx
from zosnode.cache.store import BlockCache
from zosnode.cli.flist_remote import mounted
from zosnode.fetch.fetcher import Fetcher
from zosnode.flist.browse import lookup
from zosnode.flist.format import decode
from zosnode.flist.pack import BuildOptions
from zosnode.flist.view import FlistView
from zosnode.http.client import Timeouts
from zosnode.layout import block_path


@pytest.fixture
def tree(tmp_path: Path, data_dir: Path) -> tuple[Path, bytes]:
    require_fuse()
    src = make_tree(tmp_path / "src")
    # Content-defined cuts of random bytes fall anywhere, and the default 4 MiB
    # maximum lets bin/f7's 3 MiB be one block (1 run in a few hundred); tests
    # here need it in several, so no chunk may exceed 1 MiB.
    options = BuildOptions(cdc_min=128 * 1024, cdc_avg=512 * 1024, cdc_max=1024 * 1024)
    data, _ = build_flist(src, data_dir, options=options)
    assert len(lookup(FlistView.from_bytes(data), "bin/f7").extents) >= 4
    return src, data


def _fetcher(*urls: str, deadline: float = 20.0) -> Fetcher:
    timeouts = Timeouts(connect=1.0, head=2.0, body_idle=2.0, window_bytes=16 * 1024)
    return Fetcher(list(urls), timeouts=timeouts, deadline_s=deadline, attempt_s=3.0)


async def _diff(a: Path, b: Path) -> None:
    proc = await trio.run_process(
        ["diff", "-r", "--no-dereference", "-x", "fifo", "-x", "null", str(a), str(b)],
        check=False, capture_stdout=True, capture_stderr=True,
    )
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()


async def test_mount_is_the_source_tree(
    tmp_path: Path, tree: tuple[Path, bytes], mirror: FaultyMirror
) -> None:
    src, data = tree
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cache = BlockCache(tmp_path / "cache", 1 << 30)
    async with mounted(data, mnt, _fetcher(mirror.url), cache):
        await _diff(src, mnt)
        assert await trio.to_thread.run_sync(snapshot, mnt) == snapshot(src)

        def checks() -> None:
            # Random reads at odd offsets match the source.
            big = (src / "bin" / "f7").read_bytes()
            rng = random.Random(1)
            with open(mnt / "bin" / "f7", "rb") as f:
                for _ in range(50):
                    off, n = rng.randrange(len(big)), rng.randrange(1, 300_000)
                    f.seek(off)
                    assert f.read(n) == big[off : off + n]
            assert len(os.listdir(mnt / "many")) == 300
            with pytest.raises(FileNotFoundError):
                os.stat(mnt / "nope")
            for attempt in (
                lambda: open(mnt / "etc" / "new", "w"),
                lambda: open(mnt / "etc" / "hostname", "a"),
                lambda: os.mkdir(mnt / "x"),
                lambda: os.unlink(mnt / "empty"),
                lambda: os.chmod(mnt / "empty", 0o777),
                lambda: os.setxattr(mnt / "empty", "user.a", b"b"),
                lambda: os.rename(mnt / "empty", mnt / "e2"),
            ):
                with pytest.raises(OSError) as info:
                    attempt()
                assert info.value.errno == errno.EROFS

        await trio.to_thread.run_sync(checks)
    assert str(mnt) not in Path("/proc/mounts").read_text()


async def test_second_mount_shares_the_cache(
    tmp_path: Path, tree: tuple[Path, bytes], mirror: FaultyMirror
) -> None:
    src, data = tree
    (tmp_path / "m1").mkdir()
    (tmp_path / "m2").mkdir()
    cache_dir = tmp_path / "cache"
    async with mounted(data, tmp_path / "m1", _fetcher(mirror.url),
                       BlockCache(cache_dir, 1 << 30)):
        await _diff(src, tmp_path / "m1")
    first = sum(mirror.requests.values())
    async with mounted(data, tmp_path / "m2", _fetcher(mirror.url),
                       BlockCache(cache_dir, 1 << 30)):
        await _diff(src, tmp_path / "m2")
    assert first > 0 and sum(mirror.requests.values()) == first


async def test_corrupting_mirror_never_shows_a_wrong_byte(
    tmp_path: Path, tree: tuple[Path, bytes], mirror: FaultyMirror, mirror2: FaultyMirror
) -> None:
    src, data = tree
    mirror.fail(None, Fault.CORRUPT)
    fetcher = _fetcher(mirror.url, mirror2.url)
    (tmp_path / "mnt").mkdir()
    async with mounted(data, tmp_path / "mnt", fetcher, BlockCache(tmp_path / "c", 1 << 30)):
        await _diff(src, tmp_path / "mnt")
    assert mirror.faults_served["corrupt"] >= 1
    assert {i.mirror for i in fetcher.health.incidents} == {mirror.url}


async def test_unreachable_block_is_eio_at_its_deadline(
    tmp_path: Path, tree: tuple[Path, bytes], mirror: FaultyMirror
) -> None:
    _, data = tree
    mirror.fail(None, Fault.STALL_HEAD)
    (tmp_path / "mnt").mkdir()
    async with mounted(data, tmp_path / "mnt", _fetcher(mirror.url, deadline=1.5),
                       BlockCache(tmp_path / "c", 1 << 30)) as m:
        def read() -> None:
            with pytest.raises(OSError) as info:
                (tmp_path / "mnt" / "bin" / "f6").read_bytes()
            assert info.value.errno == errno.EIO

        start = trio.current_time()
        await trio.to_thread.run_sync(read)
        assert trio.current_time() - start < 10.0
        assert m.fs.read_errors >= 1
        # Metadata needs no block: still served while the mirror is down.
        assert (await trio.to_thread.run_sync(os.listdir, tmp_path / "mnt" / "many"))


async def test_hub_killed_mid_read_then_restarted(
    tmp_path: Path, tree: tuple[Path, bytes], mirror: FaultyMirror
) -> None:
    src, data = tree
    ref = decode(data).blocks()
    big = lookup(FlistView.from_bytes(data), "bin/f7").extents[1]
    assert big.__class__.__name__ == "BlockRef" and getattr(big, "id", None) in ref
    mirror.fail(block_path(big.id), Fault.DIE, times=1)  # type: ignore[union-attr]
    (tmp_path / "mnt").mkdir()
    async with mounted(data, tmp_path / "mnt", _fetcher(mirror.url, deadline=30.0),
                       BlockCache(tmp_path / "c", 1 << 30)):
        got: list[bytes] = []
        async with trio.open_nursery() as nursery:
            async def reader() -> None:
                got.append(await trio.to_thread.run_sync(
                    (tmp_path / "mnt" / "bin" / "f7").read_bytes))
            nursery.start_soon(reader)
            await trio.sleep(2.0)
            assert not got
            await mirror.restart()
        assert got == [(src / "bin" / "f7").read_bytes()]


async def test_sequential_read_fetches_ahead(
    tmp_path: Path, tree: tuple[Path, bytes], mirror: FaultyMirror
) -> None:
    src, data = tree
    (tmp_path / "mnt").mkdir()
    cache = BlockCache(tmp_path / "c", 1 << 30)
    async with mounted(data, tmp_path / "mnt", _fetcher(mirror.url), cache):
        def head() -> bytes:
            with open(tmp_path / "mnt" / "bin" / "f7", "rb") as f:
                return f.read(256 * 1024)

        assert await trio.to_thread.run_sync(head) == (src / "bin" / "f7").read_bytes()[:262144]
        f7 = lookup(FlistView.from_bytes(data), "bin/f7")
        later = {x.id for x in f7.extents[1:]}  # type: ignore[union-attr]
        # Blocks past the first are fetched although nothing reads them yet.
        with trio.move_on_after(10.0):
            while not all(b in cache for b in later):
                await trio.sleep(0.05)
        assert later and all(cache.get(b) is not None for b in later)


async def test_prefetch_hint_makes_boot_path_local(
    tmp_path: Path, data_dir: Path, mirror: FaultyMirror
) -> None:
    require_fuse()
    src = make_tree(tmp_path / "src")
    data, _ = build_flist(src, data_dir, prefetch_paths=[b"/bin/f5", b"/bin/f6"])
    hinted = decode(data).prefetch
    assert hinted
    (tmp_path / "mnt").mkdir()
    async with mounted(data, tmp_path / "mnt", _fetcher(mirror.url),
                       BlockCache(tmp_path / "c", 1 << 30)) as m:
        await m.prefetch_done.wait()
        assert m.prefetch.fetched == len(hinted)
        before = sum(mirror.requests.values())
        for name in ("f5", "f6"):
            got = await trio.to_thread.run_sync((tmp_path / "mnt" / "bin" / name).read_bytes)
            assert got == (src / "bin" / name).read_bytes()
        assert sum(mirror.requests.values()) == before


async def test_chroot_runs_a_binary_from_the_mount(
    tmp_path: Path, data_dir: Path, mirror: FaultyMirror
) -> None:
    require_fuse()
    root = tmp_path / "src"
    for path in ("/bin/echo", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"):
        dst = root / path.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(path), dst)
    data, _ = build_flist(root, data_dir)
    (tmp_path / "mnt").mkdir()
    async with mounted(data, tmp_path / "mnt", _fetcher(mirror.url),
                       BlockCache(tmp_path / "c", 1 << 30)):
        proc = await trio.run_process(
            ["chroot", str(tmp_path / "mnt"), "/bin/echo", "from", "the", "flist"],
            capture_stdout=True,
        )
    assert proc.stdout == b"from the flist\n"


async def test_nginx_mirror_serves_a_mount(
    tmp_path: Path, tree: tuple[Path, bytes], data_dir: Path
) -> None:
    src, data = tree
    (tmp_path / "mnt").mkdir()
    with nginx(data_dir, tmp_path / "nginx") as server:
        async with mounted(data, tmp_path / "mnt", _fetcher(server.url),
                           BlockCache(tmp_path / "c", 1 << 30)):
            await _diff(src, tmp_path / "mnt")


async def test_cancellation_unmounts(
    tmp_path: Path, tree: tuple[Path, bytes], mirror: FaultyMirror
) -> None:
    _, data = tree
    (tmp_path / "mnt").mkdir()
    with trio.move_on_after(1.0):
        async with mounted(data, tmp_path / "mnt", _fetcher(mirror.url),
                           BlockCache(tmp_path / "c", 1 << 30)):
            # From a thread: this thread serves the FUSE requests stat makes.
            assert await trio.to_thread.run_sync(os.path.ismount, tmp_path / "mnt")
            await trio.sleep_forever()
    assert str(tmp_path / "mnt") not in Path("/proc/mounts").read_text()


async def test_flipped_bit_in_disk_cache_is_caught_and_fetched_again(
    tmp_path: Path, tree: tuple[Path, bytes], mirror: FaultyMirror
) -> None:
    src, data = tree
    (tmp_path / "mnt").mkdir()
    cache_dir = tmp_path / "disk-cache"
    async with mounted(data, tmp_path / "mnt", _fetcher(mirror.url),
                       BlockCache(cache_dir, 1 << 30, durable=True)):
        await trio.to_thread.run_sync((tmp_path / "mnt" / "bin" / "f7").read_bytes)
    f7 = lookup(FlistView.from_bytes(data), "bin/f7")
    victim = f7.extents[-1].id  # type: ignore[union-attr]  # 4 or more chunks
    path = cache_dir / victim[:2] / victim
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    path.write_bytes(bytes(raw))
    before = mirror.requests[block_path(victim)]
    async with mounted(data, tmp_path / "mnt", _fetcher(mirror.url),
                       BlockCache(cache_dir, 1 << 30, durable=True)) as m:
        got = await trio.to_thread.run_sync((tmp_path / "mnt" / "bin" / "f7").read_bytes)
        assert got == (src / "bin" / "f7").read_bytes()
        # A read and a readahead may both meet the bad entry; one fetch follows.
        assert m.source.cache.stats.corrupt >= 1
    assert mirror.requests[block_path(victim)] == before + 1


async def test_full_cache_evicts_and_reads_go_on(
    tmp_path: Path, tree: tuple[Path, bytes], mirror: FaultyMirror
) -> None:
    src, data = tree
    (tmp_path / "mnt").mkdir()
    # Smaller than the image, large enough for its largest block (a block
    # larger than the cache is never cached, and nothing would be evicted).
    sizes = [r.stored_size for r in decode(data).blocks().values()]
    limit = max(2 << 20, max(sizes) + 4096)
    assert sum(sizes) > limit
    cache = BlockCache(tmp_path / "small", limit)
    async with mounted(data, tmp_path / "mnt", _fetcher(mirror.url), cache, hot_bytes=1 << 20):
        await _diff(src, tmp_path / "mnt")
    assert cache.stats.evictions > 0 and cache.used_bytes <= limit
    on_disk = sum(p.stat().st_size for p in (tmp_path / "small").rglob("*") if p.is_file())
    assert on_disk <= limit


async def test_cache_medium_full_costs_no_read(
    tmp_path: Path, tree: tuple[Path, bytes], mirror: FaultyMirror
) -> None:
    src, data = tree
    small = tmp_path / "tiny-tmpfs"
    small.mkdir()
    (tmp_path / "mnt").mkdir()
    # The cache believes it may hold 1 GiB; the medium holds 512 KiB.
    await trio.run_process(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(small)])
    try:
        cache = BlockCache(small, 1 << 30)
        async with mounted(data, tmp_path / "mnt", _fetcher(mirror.url), cache):
            await _diff(src, tmp_path / "mnt")
        assert cache.stats.write_errors > 0
    finally:
        await trio.run_process(["umount", "-l", str(small)], check=False)
