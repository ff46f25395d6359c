"""The data path's read engine: one BLAKE2b per block, shared decodes, the one
pipelined extract (bounded memory, parallel fetches), 1 MiB FUSE requests."""

from __future__ import annotations

import hashlib
import mmap
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.datapath.conftest import build_flist, cache_entry, make_tree, read_entry
from tests.datapath.fuse import require_fuse, snapshot
from tests.lab.faulty_mirror import Fault, FaultyMirror
from zosnode.cache.store import SEED, BlockCache
from zosnode.fetch import fetcher as fetcher_mod
from zosnode.fetch import pipeline
from zosnode.fetch.eager import extract_from_hubs
from zosnode.fetch.errors import FetchError
from zosnode.fetch.fetcher import Fetcher
from zosnode.fetch.pipeline import extract_view
from zosnode.fetch.source import BlockSource
from zosnode.flist import blocks as blocks_mod
from zosnode.flist.blocks import BlockRef, Compression
from zosnode.flist.materialize import read_order
from zosnode.flist.pack import BuildOptions
from zosnode.flist.view import FlistView
from zosnode.layout import block_path

MiB = 1 << 20


def random_tree(root: Path, files: int, size: int) -> Path:
    root.mkdir(parents=True)
    for i in range(files):
        (root / f"f{i:02}").write_bytes(os.urandom(size))
    (root / "small").write_bytes(b"hello\n")
    return root


def raw_flist(src: Path, data_dir: Path) -> bytes:
    # Fixed 512 KiB blocks stored raw: sizes the assertions can count on.
    raw, _ = build_flist(src, data_dir, options=BuildOptions(
        compression=Compression.NONE, chunking="fixed", chunk_size=512 * 1024))
    return raw


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts BLAKE2b-256 block hashes made by the fetcher and by decode_block."""
    count = [0]

    def counting(data: bytes) -> str:
        count[0] += 1
        return hashlib.blake2b(data, digest_size=32).hexdigest()

    monkeypatch.setattr(blocks_mod, "block_id", counting)
    monkeypatch.setattr(fetcher_mod, "object_id", counting)
    return count


def refs_of(raw: bytes) -> list[BlockRef]:
    return list(FlistView.from_bytes(raw).flist.blocks().values())


async def test_a_fetched_block_is_hashed_once_and_readers_share_its_decode(
    tmp_path: Path, data_dir: Path, mirror: FaultyMirror, hashes: list[int]
) -> None:
    refs = refs_of(raw_flist(random_tree(tmp_path / "src", 2, 3 * MiB), data_dir))
    source = BlockSource(Fetcher([mirror.url]), BlockCache(tmp_path / "c", 1 << 30))
    hashes[0] = 0  # the builder's
    got: list[bytes] = []
    async with trio.open_nursery() as nursery:
        for ref in refs:
            for _ in range(3):  # a read and two readaheads of the same block at once
                nursery.start_soon(_append, got, source.decoded(ref))
    # On main: the fetcher's hash, then decode_block's, once per reader: 4 a block.
    assert hashes[0] == len(refs)
    assert source.decodes == len(refs) and len(got) == 3 * len(refs)
    assert all(mirror.requests[block_path(r.id)] == 1 for r in refs)


async def _append(out: list[bytes], aw: Any) -> None:
    out.append(await aw)


async def test_a_cache_entry_forged_with_a_valid_checksum_is_refused(
    tmp_path: Path, data_dir: Path, mirror: FaultyMirror
) -> None:
    # Someone who can write the cache medium rewrites an entry, checksum and
    # all: the xxh3 envelope passes, BLAKE2b does not, the block is fetched again.
    ref = refs_of(raw_flist(random_tree(tmp_path / "src", 1, 100_000), data_dir))[0]
    cache = BlockCache(tmp_path / "c", 1 << 30)
    true = (data_dir / block_path(ref.id)).read_bytes()
    forged = bytes(b ^ 0xFF for b in true)
    path = tmp_path / "c" / ref.id[:2] / ref.id
    path.parent.mkdir(parents=True)
    path.write_bytes(cache_entry(SEED, forged))
    source = BlockSource(Fetcher([mirror.url]), cache)
    assert await source.decoded(ref) == true  # stored raw: decoded == stored
    assert cache.stats.corrupt == 1 and mirror.requests[block_path(ref.id)] == 1
    assert read_entry(SEED, ref.id, path.read_bytes()) == true


@pytest.fixture
def ram() -> Any:
    """A directory on the tmpfs /dev/shm (the node's RAM cache lives on a tmpfs)."""
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm here")
    d = Path(tempfile.mkdtemp(prefix="zosnode-test-", dir="/dev/shm"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_only_a_cache_in_ram_that_no_one_else_may_write_is_trusted(
    tmp_path: Path, ram: Path
) -> None:
    assert BlockCache(ram / "c", 1 << 20).trusted
    assert not BlockCache(tmp_path / "c", 1 << 20).trusted  # a disk (pytest's tmp)
    (ram / "shared").mkdir()
    (ram / "shared").chmod(0o777)
    assert not BlockCache(ram / "shared", 1 << 20).trusted


@pytest.mark.parametrize("medium", ["ram", "disk"])
async def test_a_fresh_reader_of_a_ram_cache_hashes_nothing_and_of_a_disk_everything(
    tmp_path: Path, ram: Path, data_dir: Path, mirror: FaultyMirror, hashes: list[int],
    medium: str,
) -> None:
    # One BLAKE2b per block per boot: a block in the node's RAM cache was
    # verified before it was put there; a disk's is hashed by every reader.
    raw = raw_flist(random_tree(tmp_path / "src", 2, 3 * MiB), data_dir)
    refs = refs_of(raw)
    where = (ram if medium == "ram" else tmp_path) / "c"
    first = BlockSource(Fetcher([mirror.url]), BlockCache(where, 1 << 30))
    hashes[0] = 0
    for ref in refs:
        await first.decoded(ref)
    assert hashes[0] == len(refs)
    hashes[0] = 0
    fresh = BlockSource(Fetcher([mirror.url]), BlockCache(where, 1 << 30))  # a new mount
    for ref in refs:
        got = await fresh.decoded(ref)
        assert bytes(got) == (data_dir / block_path(ref.id)).read_bytes()
    # On main: a hash per block on either medium.
    assert hashes[0] == (0 if medium == "ram" else len(refs))
    assert all(mirror.requests[block_path(r.id)] == 1 for r in refs)


async def test_a_mount_keeps_blocks_decoded_in_ram_and_a_later_mount_only_maps_them(
    tmp_path: Path, ram: Path, data_dir: Path, mirror: FaultyMirror, hashes: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw, _ = build_flist(random_tree(tmp_path / "src", 2, 3 * MiB), data_dir, options=BuildOptions(
        compression=Compression.ZSTD, chunking="fixed", chunk_size=512 * 1024))
    refs = refs_of(raw)
    first = BlockSource(Fetcher([mirror.url]), BlockCache(ram / "c", 1 << 30), decoded_cache=True)
    want = {r.id: bytes(await first.decoded(r)) for r in refs}
    # An older process's stored entry beside them: another form, so a miss, not a wrong byte.
    old = refs[0]
    (ram / "c" / old.id[:2] / old.id).write_bytes(
        cache_entry(SEED, (data_dir / block_path(old.id)).read_bytes()))
    decodes = [0]
    real = blocks_mod._decompress

    def counting(*args: Any) -> Any:
        decodes[0] += 1
        return real(*args)

    monkeypatch.setattr(blocks_mod, "_decompress", counting)
    hashes[0] = 0
    later = BlockSource(Fetcher([mirror.url]), BlockCache(ram / "c", 1 << 30), decoded_cache=True)
    for r in refs:
        assert bytes(await later.decoded(r)) == want[r.id]
    # On main: every block hashed and decompressed again by the later mount.
    assert hashes[0] == decodes[0] == 1  # the old-form entry, fetched again
    assert mirror.requests[block_path(old.id)] == 2
    assert all(mirror.requests[block_path(r.id)] == 1 for r in refs[1:])
    # An extract's source reads the stored form: the decoded entries are misses to it.
    extract = BlockSource(Fetcher([mirror.url]), BlockCache(ram / "c", 1 << 30), hot_bytes=0)
    assert bytes(await extract.decoded(refs[1], keep=False)) == want[refs[1].id]
    assert mirror.requests[block_path(refs[1].id)] == 2


async def test_a_block_decoded_in_the_ram_cache_needs_no_readahead_and_no_fetch(
    tmp_path: Path, ram: Path, data_dir: Path, mirror: FaultyMirror,
) -> None:
    raw = raw_flist(random_tree(tmp_path / "src", 1, 2 * MiB), data_dir)
    refs = refs_of(raw)
    first = BlockSource(Fetcher([mirror.url]), BlockCache(ram / "c", 1 << 30), decoded_cache=True)
    want = {r.id: bytes(await first.decoded(r)) for r in refs[1:]}
    later = BlockSource(Fetcher([mirror.url]), BlockCache(ram / "c", 1 << 30), hot_bytes=0,
                        decoded_cache=True)
    # On main: False, so FUSE readahead spawned a task per block to map it.
    assert all(later.is_hot(r.id) for r in refs[1:])
    assert not later.is_hot(refs[0].id)  # never fetched: readahead's work
    for r in refs[1:]:
        assert bytes(await later.decoded(r)) == want[r.id]
    assert all(mirror.requests[block_path(r.id)] == 1 for r in refs[1:])
    # A disk cache's copies are hashed by every reader: readahead does that work.
    disk = BlockCache(tmp_path / "d", 1 << 30)
    if disk.trusted:  # tmp_path on a tmpfs of this user's: no disk here
        return
    await BlockSource(Fetcher([mirror.url]), disk, decoded_cache=True).decoded(refs[1])
    assert refs[1].id in disk
    assert not BlockSource(Fetcher([mirror.url]), disk, decoded_cache=True).is_hot(refs[1].id)


class CountingFetcher(Fetcher):
    """How many block fetches are out at once."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.now = self.most = 0

    async def _counted(self, fn: Callable[[], Any]) -> Any:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            return await fn()
        finally:
            self.now -= 1

    async def fetch_block(self, block_id: str, *, max_size: int = 0) -> bytes:
        data: bytes = await self._counted(lambda: super(CountingFetcher, self).fetch_block(
            block_id, max_size=max_size))
        return data

    async def fetch_checked(self, *args: Any, **kw: Any) -> Any:
        return await self._counted(lambda: super(CountingFetcher, self).fetch_checked(
            *args, **kw))


async def test_extract_is_pipelined_in_bounded_memory(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feeds: list[pipeline._Feed] = []

    class Watched(pipeline._Feed):  # the feed keeps its peak of decoded bytes held
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            feeds.append(self)

    monkeypatch.setattr(pipeline, "_Feed", Watched)
    src = random_tree(tmp_path / "src", 6, 2 * MiB)
    raw = raw_flist(src, data_dir)
    view = FlistView.from_bytes(raw)
    biggest = max(r.size for r in read_order(view))
    async with trio.open_nursery() as nursery:
        slow = FaultyMirror(data_dir, latency_s=0.02)
        await slow.start(nursery)
        fetcher = CountingFetcher([slow.url])
        source = BlockSource(fetcher, None, hot_bytes=0)
        await extract_view(view, tmp_path / "out", source, parallel=4, ahead_bytes=2 * MiB)
        nursery.cancel_scope.cancel()
    assert snapshot(tmp_path / "out") == snapshot(src)
    print(f"\npipeline: {len(read_order(view))} blocks, {fetcher.most} fetches at once,"
          f" peak {feeds[0].peak} decoded bytes held (bound {max(2 * MiB, biggest)})")
    assert 2 <= fetcher.most <= 4
    assert len(feeds) == 1 and feeds[0].peak <= max(2 * MiB, biggest)
    assert source.decodes == len(read_order(view))


def _watched_feeds(monkeypatch: pytest.MonkeyPatch) -> list[pipeline._Feed]:
    """Every extract's feed, as it is made."""
    feeds: list[pipeline._Feed] = []

    class Watched(pipeline._Feed):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            feeds.append(self)

    monkeypatch.setattr(pipeline, "_Feed", Watched)
    return feeds


async def test_a_packed_block_used_far_apart_is_held_or_fetched_again_within_the_budget(
    tmp_path: Path, data_dir: Path, mirror: FaultyMirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small files of three directories share one packed block, asked for between the big
    # files' blocks: the writer's uses of it are counted, not assumed consecutive.
    src = tmp_path / "src"
    for d in ("a", "b", "c"):
        (src / d).mkdir(parents=True)
        for i in range(3):
            (src / d / f"s{i}").write_bytes(os.urandom(3000))
        (src / d / "zbig").write_bytes(os.urandom(MiB))
    raw, _ = build_flist(src, data_dir)
    view = FlistView.from_bytes(raw)
    order = [r.id for r in read_order(view)]
    assert len(order) > len(set(order))  # the case: one block at several places
    feeds = _watched_feeds(monkeypatch)
    for ahead, fetched in ((1, len(order)), (64 * MiB, len(set(order)))):
        source = BlockSource(Fetcher([mirror.url]), None, hot_bytes=0)
        await extract_view(view, tmp_path / f"out{ahead}", source, ahead_bytes=ahead)
        assert snapshot(tmp_path / f"out{ahead}") == snapshot(src)
        # One byte ahead: each block alone, dropped after its use, fetched again later.
        assert source.decodes == fetched
        assert feeds[-1].held == 0 and not feeds[-1]._got


async def test_a_cancelled_extract_stops_its_writer_waiting_for_a_block(
    tmp_path: Path, data_dir: Path, mirror: FaultyMirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The writer waits on a lock, not in trio: a cancel must still reach it.
    feeds = _watched_feeds(monkeypatch)
    view = FlistView.from_bytes(raw_flist(random_tree(tmp_path / "src", 2, MiB), data_dir))
    mirror.fail(None, Fault.STALL_HEAD)  # no block comes
    done = threading.Event()

    def unstick() -> None:  # a writer deaf to the cancel would wait for ever: bound the test
        if not done.wait(20):
            for feed in feeds:
                with feed._ready:
                    feed._got.update({r.id: FetchError("unstuck") for r in read_order(view)})
                    feed._ready.notify()

    threading.Thread(target=unstick, daemon=True).start()
    started = time.monotonic()
    with trio.move_on_after(0.5):
        await extract_view(view, tmp_path / "out", BlockSource(Fetcher([mirror.url]), None))
    took = time.monotonic() - started
    done.set()
    print(f"\ncancelled extract returned in {took:.2f} s")
    assert took < 10
    assert not (tmp_path / "out").exists()


async def test_node_extraction_fallback_fetches_in_parallel(
    tmp_path: Path, data_dir: Path
) -> None:
    from zosnode.agent.boot.mounters import ExtractMounter
    from zosnode.flist.format import flist_id
    from zosnode.trust.manifest import FlistPin

    src = random_tree(tmp_path / "src", 4, MiB)
    raw = raw_flist(src, data_dir)
    said: list[str] = []
    async with trio.open_nursery() as nursery:
        slow = FaultyMirror(data_dir, latency_s=0.02)
        await slow.start(nursery)
        fetcher = CountingFetcher([slow.url])
        cache = BlockCache(tmp_path / "cache", 1 << 30)
        mounter = ExtractMounter(lambda: fetcher, cache, say=said.append)
        pin = FlistPin("os", flist_id(raw), len(raw), "/")
        await nursery.start(mounter.serve, pin, raw, tmp_path / "out")
        assert snapshot(tmp_path / "out") == snapshot(src)
        nursery.cancel_scope.cancel()
    # On main: one block after another, every one held in RAM until the end.
    assert fetcher.most >= 2
    assert f"fetched {len(refs_of(raw))} " in said[0]
    assert all(r.id in cache for r in refs_of(raw))  # kept for the next upgrade


async def test_a_block_larger_than_declared_fails_the_extract_plainly(
    tmp_path: Path, data_dir: Path, mirror: FaultyMirror
) -> None:
    src = random_tree(tmp_path / "src", 1, 300_000)
    raw = raw_flist(src, data_dir)
    ref = refs_of(raw)[0]
    bloated = data_dir / block_path(ref.id)
    bloated.write_bytes(bloated.read_bytes() + os.urandom(4 * MiB))
    fetcher = Fetcher([mirror.url], give_up_s=0.3, deadline_s=2.0)
    with pytest.raises(FetchError):  # itself, not wrapped in an exception group
        await extract_from_hubs(raw, tmp_path / "out", fetcher, None)
    assert not (tmp_path / "out").exists()


async def test_mount_reads_in_1_mib_requests_and_mmap_works(
    tmp_path: Path, data_dir: Path, mirror: FaultyMirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_fuse()
    from zosnode.cli.flist_remote import mounted
    from zosnode.mount.fs import FlistFS

    src = random_tree(tmp_path / "src", 1, 8 * MiB)
    raw = raw_flist(src, data_dir)
    sizes: list[int] = []
    read = FlistFS.read

    async def recording(self: FlistFS, fh: int, off: int, size: int) -> Any:
        sizes.append(size)
        return await read(self, fh, off, size)

    monkeypatch.setattr(FlistFS, "read", recording)
    (tmp_path / "mnt").mkdir()
    want = (src / "f00").read_bytes()
    async with mounted(raw, tmp_path / "mnt", Fetcher([mirror.url]),
                       BlockCache(tmp_path / "c", 1 << 30)):

        def read_all() -> tuple[bytes, bytes]:
            with open(tmp_path / "mnt" / "f00", "rb") as f:
                data = f.read()
                with mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
                    return data, m[:]

        data, mapped = await trio.to_thread.run_sync(read_all)
    assert data == want and mapped == want
    print(f"\nFUSE read requests: {len(sizes)}, largest {max(sizes)} bytes")
    # On main: 128 KiB, the kernel's default for a FUSE mount.
    assert max(sizes) == MiB


def test_read_order_is_the_order_extract_asks(tmp_path: Path, data_dir: Path) -> None:
    src = make_tree(tmp_path / "src")
    raw, _ = build_flist(src, data_dir)
    view = FlistView.from_bytes(raw)
    asked: list[str] = []

    class Recording:
        def block(self, ref: BlockRef) -> bytes | memoryview:
            asked.append(ref.id)
            return blocks_mod.decode_block(ref, (data_dir / block_path(ref.id)).read_bytes())

    from zosnode.flist.materialize import extract_blocks

    extract_blocks(view, Recording(), tmp_path / "out")
    collapsed = [b for i, b in enumerate(asked) if i == 0 or asked[i - 1] != b]
    assert collapsed == [r.id for r in read_order(view)]


async def test_readahead_follows_requests_whose_answers_come_out_of_order(
    tmp_path: Path, data_dir: Path
) -> None:
    pytest.importorskip("pyfuse3")
    import trio.testing

    from zosnode.flist.browse import lookup
    from zosnode.mount.fs import FlistFS

    view = FlistView.from_bytes(raw_flist(random_tree(tmp_path / "src", 1, 6 * MiB), data_dir))
    entry = lookup(view, "f00")

    class Gated:
        """Answers every read at once but the first, held until let go."""

        fetcher = Fetcher(["http://127.0.0.1:9"])
        gate = trio.Event()
        reads = 0

        def is_hot(self, block_id: str) -> bool:
            return False

        async def views(self, pieces: list[tuple[BlockRef | None, int, int]]) -> list[bytes]:
            self.reads += 1
            if self.reads == 1:
                await self.gate.wait()
            return [bytes(n) for _, _, n in pieces]

    source = Gated()
    warmed: list[object] = []
    fs = FlistFS(view, source, readahead_bytes=4 * MiB,  # type: ignore[arg-type]
                 spawn=warmed.append)
    fi = await fs.open(entry.index + 1, os.O_RDONLY, None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fs.read, fi.fh, 0, MiB)  # the first request, answered last
        await trio.testing.wait_all_tasks_blocked()
        await fs.read(fi.fh, MiB, MiB)  # the kernel's next readahead request
        source.gate.set()
    # On main the answers were observed in their order (1 MiB, then 0): no stream.
    assert warmed
