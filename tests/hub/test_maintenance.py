"""`hub gc`, `hub verify`, `hub mirror` on a real store: what goes, what is
reported, what is copied, and gc racing a publish (the timing forced by a
hook that holds gc between its mark and its sweep)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from tests.hub.releases import Image, key, signed_manifest, signed_root
from tests.lab.nginx import nginx
from zosnode import layout
from zosnode.flist.format import decode
from zosnode.flist.pack import build
from zosnode.flist.source_dir import tree_from_dir
from zosnode.flist.store import LocalStore
from zosnode.flist.writer import EncodedBlock, encode
from zosnode.hub import inventory, paths
from zosnode.hub.gc import GcPolicy, Lock, collect, retained_versions
from zosnode.hub.mirror import mirror
from zosnode.hub.publish import Publisher, PublishRefused, stored_manifest
from zosnode.hub.registry import Registry
from zosnode.hub.registry_db import SqliteRegistry
from zosnode.hub.storage import LocalStorage, StorageError
from zosnode.hub.verify import verify
from zosnode.progress import Progress

REPO = Path(__file__).resolve().parents[2]
KEYS = [key("maint-a")]
DAY = 86400.0


def image_of(src: Path, store_dir: Path) -> Image:
    """The flist of directory `src`, its blocks in a LocalStore (same bytes, same blocks)."""
    store = LocalStore(store_dir)
    store.init()

    def sink(block: EncodedBlock) -> bool:
        return store.put_block(block.stored)[1]

    flist, _ = build(tree_from_dir(src), sink)
    data = encode(flist)
    return Image(store, store.put_flist(data), data, list(flist.blocks()))


def random_tree(where: Path, files: int, seed: int) -> Path:
    where.mkdir(parents=True)
    for i in range(files):
        (where / f"f{seed}-{i}").write_bytes(os.urandom([900, 70_000, 300_000][i % 3]))
    return where


@dataclass
class Hub:
    storage: LocalStorage
    pub: Publisher
    dir: Path


async def new_hub(path: Path) -> Hub:
    storage = LocalStorage(str(path))
    await storage.prepare()
    pub = Publisher(storage)
    await pub.put(layout.root_path(1), signed_root(1, KEYS, KEYS, 1), int(time.time()))
    return Hub(storage, pub, path)


async def upload(hub: Hub, image: Image, *, skip_present: bool = True) -> int:
    """What `hub push` does for one flist: the blocks the hub lacks, then the flist."""
    sent = 0
    now = int(time.time())
    for bid in image.block_ids:
        if skip_present and await hub.storage.exists(layout.block_path(bid)):
            continue
        await hub.pub.put(layout.block_path(bid), image.store.get_block(bid), now)
        sent += 1
    if not await hub.storage.exists(layout.flist_path(image.flist_id)):
        await hub.pub.put(layout.flist_path(image.flist_id), image.flist_bytes, now)
    return sent


async def release(hub: Hub, version: int, *images: Image, channel: str = "stable") -> None:
    for image in images:
        await upload(hub, image)
    body = signed_manifest(channel, version, KEYS,
                           tuple((i.flist_id, len(i.flist_bytes)) for i in images))
    await hub.pub.put(layout.manifest_path(channel), body, int(time.time()))


def age_everything(root: Path, by: float) -> None:
    when = time.time() - by
    for here, _, files in os.walk(root):
        for name in files:
            os.utime(os.path.join(here, name), (when, when))


def blocks_on(root: Path) -> set[str]:
    """The block ids stored under `root` (a writer's `.tmp-` file is not a block)."""
    folder = root / layout.BLOCKS
    if not folder.exists():
        return set()
    return {p.name for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")}


def test_retained_versions_keeps_the_newest_and_anything_in_flight() -> None:
    assert retained_versions([1, 2, 3, 4], 4, None) == {1, 2, 3, 4}
    assert retained_versions([1, 2, 3, 4], 4, 2) == {3, 4}
    # record 5 written, pointer not yet moved: a publish in flight keeps it
    assert retained_versions([1, 2, 3, 4, 5], 4, 1) == {4, 5}
    assert retained_versions([1, 2], None, 1) == {2}


async def test_gc_deletes_only_what_nothing_retained_needs(tmp_path: Path) -> None:
    hub = await new_hub(tmp_path / "data")
    a = image_of(random_tree(tmp_path / "a", 6, 1), tmp_path / "sa")
    b = image_of(random_tree(tmp_path / "b", 6, 2), tmp_path / "sb")
    tagged = image_of(random_tree(tmp_path / "t", 3, 3), tmp_path / "st")
    orphan = image_of(random_tree(tmp_path / "o", 3, 4), tmp_path / "so")
    await release(hub, 1, a)
    await release(hub, 2, b)
    await upload(hub, tagged)
    await hub.pub.put(paths.tag_path("base"), f"{tagged.flist_id}\n".encode(), int(time.time()))
    await upload(hub, orphan)
    age_everything(hub.dir, 2 * DAY)
    young = image_of(random_tree(tmp_path / "y", 2, 5), tmp_path / "sy")
    await upload(hub, young)  # uploaded now: within the grace period
    before = blocks_on(hub.dir)

    dry = await collect(hub.storage, GcPolicy(grace_s=DAY, keep=1), dry_run=True)
    assert blocks_on(hub.dir) == before
    report = await collect(hub.storage, GcPolicy(grace_s=DAY, keep=1))
    print(f"gc: {report.objects_scanned} objects in {report.seconds:.3f} s")
    assert (dry.deleted['blocks'], dry.deleted['flists'], dry.deleted['releases']) == (
        report.deleted['blocks'], report.deleted['flists'], report.deleted['releases'])
    after = blocks_on(hub.dir)
    gone_expected = (set(a.block_ids) | set(orphan.block_ids)) - set(b.block_ids) \
        - set(tagged.block_ids)
    assert before - after == gone_expected
    assert set(b.block_ids) | set(tagged.block_ids) | set(young.block_ids) <= after
    assert report.deleted['releases'] == 1  # v1's record: outside --keep 1
    assert not (hub.dir / layout.flist_path(a.flist_id)).exists()
    assert not (hub.dir / layout.flist_path(orphan.flist_id)).exists()
    for kept in (b, tagged, young):
        assert (hub.dir / layout.flist_path(kept.flist_id)).exists()
    assert report.lost == []
    check = await verify(hub.storage)
    assert check.problems == []

    # Without --keep every release is retained: a second gc finds nothing to do.
    again = await collect(hub.storage, GcPolicy(grace_s=DAY))
    assert again.deleted['blocks'] == again.deleted['flists'] == 0


async def _gc_racing_a_publish(tmp_path: Path, recheck: bool) -> tuple[Hub, Image, list[str]]:
    """gc held between mark and sweep while a publish re-uses old unreferenced blocks
    (a release that was retired) and uploads new ones, then commits its manifest."""
    hub = await new_hub(tmp_path / "data")
    retired_src = random_tree(tmp_path / "retired", 6, 10)
    retired = image_of(retired_src, tmp_path / "s-retired")
    kept = image_of(random_tree(tmp_path / "kept", 3, 11), tmp_path / "s-kept")
    await release(hub, 1, retired)
    await release(hub, 2, kept)
    age_everything(hub.dir, 3 * DAY)
    # The next release ships the retired files again plus a new one.
    nxt_src = tmp_path / "next"
    shutil.copytree(retired_src, nxt_src)
    (nxt_src / "new").write_bytes(os.urandom(250_000))
    nxt = image_of(nxt_src, tmp_path / "s-next")
    reused = set(nxt.block_ids) & set(retired.block_ids)
    assert reused and set(nxt.block_ids) - reused
    marked = trio.Event()
    published = trio.Event()

    async def hold() -> None:
        marked.set()
        await published.wait()

    async def publisher() -> None:
        await marked.wait()
        sent = await upload(hub, nxt)  # the hub has the reused blocks: only new ones go
        assert sent == len(set(nxt.block_ids) - reused)
        body = signed_manifest("stable", 3, KEYS, ((nxt.flist_id, len(nxt.flist_bytes)),))
        await hub.pub.put(layout.manifest_path("stable"), body, int(time.time()))
        published.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(publisher)
        report = await collect(hub.storage, GcPolicy(grace_s=DAY, keep=1), after_mark=hold,
                               recheck=recheck)
    print(f"gc (recheck={recheck}): deleted {report.deleted['blocks']} blocks, "
          f"rescued {report.rescued}, lost {len(report.lost)}")
    return hub, nxt, [k for k in map(layout.block_path, nxt.block_ids)
                      if not (hub.dir / k).exists()]


async def test_gc_racing_a_publish_keeps_every_block_the_new_release_needs(
        tmp_path: Path) -> None:
    hub, nxt, missing = await _gc_racing_a_publish(tmp_path, recheck=True)
    assert missing == []
    assert (hub.dir / layout.flist_path(nxt.flist_id)).exists()
    report = await verify(hub.storage)
    assert report.problems == []
    # Every retained release's flists have all their blocks, sound (flist verify's check).
    for record in (hub.dir / paths.releases_folder("stable")).iterdir():
        for pin in stored_manifest(record.read_bytes()).flists:
            flist = decode((hub.dir / layout.flist_path(pin.id)).read_bytes())
            for bid in flist.blocks():
                assert layout.object_id((hub.dir / layout.block_path(bid)).read_bytes()) == bid


async def test_without_the_guard_the_same_race_loses_blocks(tmp_path: Path) -> None:
    """The control: the race test above can fail. With the re-check off, gc deletes
    the reused blocks under the new release and verify names them."""
    hub, _, missing = await _gc_racing_a_publish(tmp_path, recheck=False)
    assert missing
    problems = (await verify(hub.storage)).problems
    assert any("not stored" in p.what for p in problems)


def assert_every_flist_whole(data: Path) -> int:
    """Every block every stored flist references is stored, sound; returns the count."""
    checked = 0
    for f in (data / layout.FLISTS).rglob("*"):
        if not f.is_file() or not layout.is_hex_id(f.name):
            continue
        for bid in decode(f.read_bytes()).blocks():
            block = data / layout.block_path(bid)
            assert block.exists(), f"flist {f.name[:12]} references deleted block {bid[:12]}"
            assert layout.object_id(block.read_bytes()) == bid
            checked += 1
    return checked


def watched(lock: Lock, wanting: trio.Event, holding: trio.Event | None = None,
            until: trio.Event | None = None) -> Lock:
    """`lock`, setting `wanting` when asked for; the first time it is held it sets
    `holding` and waits for `until` (the other side now waiting for it)."""
    first = [True]

    @asynccontextmanager
    async def cm() -> AsyncIterator[None]:
        wanting.set()
        async with lock():
            if first[0] and holding is not None and until is not None:
                first[0] = False
                holding.set()
                await until.wait()
                await trio.sleep(0.3)  # the other side is in its flock poll by now
            yield
    return cm


async def _retired_and_next(tmp_path: Path) -> tuple[Hub, Image, Image, set[str], Path]:
    """v1 (retired by --keep 1) and v2 published and aged; `nxt` ships v1's files
    again plus a new one. The hub's publisher and gc share an flock publish lock
    (separate registries on one file, as separate processes would)."""
    hub = await new_hub(tmp_path / "data")
    retired_src = random_tree(tmp_path / "retired", 6, 80)
    retired = image_of(retired_src, tmp_path / "s-retired")
    kept = image_of(random_tree(tmp_path / "kept", 3, 81), tmp_path / "s-kept")
    await release(hub, 1, retired)
    await release(hub, 2, kept)
    age_everything(hub.dir, 3 * DAY)
    nxt_src = tmp_path / "next"
    shutil.copytree(retired_src, nxt_src)
    (nxt_src / "new").write_bytes(os.urandom(250_000))
    nxt = image_of(nxt_src, tmp_path / "s-next")
    reused = set(nxt.block_ids) & set(retired.block_ids)
    assert reused and set(nxt.block_ids) - reused
    return hub, retired, nxt, reused, tmp_path / "data" / ".hub" / "registry.sqlite3"


async def test_a_publish_reusing_a_doomed_block_waits_for_gcs_batch_then_is_refused(
        tmp_path: Path) -> None:
    """gc holds the publish lock inside its first block batch (after its re-read);
    the flist publish reusing old blocks waits for the lock, then finds them
    deleted and is refused; nothing stored names a deleted block; the retry push
    makes (uploading what the hub now lacks) restores them."""
    hub, _, nxt, reused, db = await _retired_and_next(tmp_path)
    hub_side, gc_side = Registry(SqliteRegistry(str(db))), Registry(SqliteRegistry(str(db)))
    publish_wants = trio.Event()
    hub.pub = Publisher(hub.storage, lock=watched(hub_side.publish_lock, publish_wants))
    await hub.pub.load_roots()
    in_lock = trio.Event()
    outcome: dict[str, object] = {}

    async def held(phase: str) -> None:
        if phase == "blocks" and not in_lock.is_set():
            in_lock.set()
            with trio.move_on_after(10):  # a publish that takes no lock never asks
                await publish_wants.wait()
            await trio.sleep(0.3)  # the publish is in its flock poll by now
            outcome["waiting"] = time.monotonic()

    async def publisher() -> None:
        await in_lock.wait()
        try:
            await upload(hub, nxt)  # the hub has the reused blocks: only new ones go
        except PublishRefused as exc:
            outcome["refused"] = exc.reason
            outcome["at"] = time.monotonic()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(publisher)
        report = await collect(hub.storage, GcPolicy(grace_s=DAY, keep=1),
                               lock=gc_side.publish_lock, in_batch=held)
    assert_every_flist_whole(hub.dir)  # (a publish without the lock fails here)
    assert outcome.get("refused") == "missing-blocks", outcome
    assert isinstance(outcome["at"], float) and isinstance(outcome["waiting"], float)
    print(f"publish waited {outcome['at'] - outcome['waiting']:.3f} s for gc's batch; gc: "
          f"{report.batches} batches, longest hold {report.max_hold_s:.3f} s")
    assert not (hub.dir / layout.flist_path(nxt.flist_id)).exists()
    assert not any((hub.dir / layout.block_path(b)).exists() for b in reused)
    assert report.lost == []
    # What `hub push` does on missing-blocks: ask again, send what is missing, retry.
    assert await upload(hub, nxt) == len(reused)
    body = signed_manifest("stable", 3, KEYS, ((nxt.flist_id, len(nxt.flist_bytes)),))
    await hub.pub.put(layout.manifest_path("stable"), body, int(time.time()))
    assert assert_every_flist_whole(hub.dir) >= len(nxt.block_ids)
    assert (await verify(hub.storage)).problems == []
    await hub_side.aclose()
    await gc_side.aclose()


async def test_a_publish_holding_the_lock_first_makes_gc_wait_and_keep_its_blocks(
        tmp_path: Path) -> None:
    """The reverse order: the flist publish holds the lock (checked, not yet written)
    when gc's first batch asks for it; gc waits, re-reads under the lock, sees the
    new flist and keeps every block it reuses."""
    hub, _, nxt, reused, db = await _retired_and_next(tmp_path)
    hub_side, gc_side = Registry(SqliteRegistry(str(db))), Registry(SqliteRegistry(str(db)))
    publish_wants, publish_holds, gc_wants = trio.Event(), trio.Event(), trio.Event()
    hub.pub = Publisher(hub.storage, lock=watched(hub_side.publish_lock, publish_wants,
                                                  publish_holds, gc_wants))
    await hub.pub.load_roots()
    marked = trio.Event()

    async def after_mark() -> None:
        marked.set()
        with trio.fail_after(30):
            await publish_holds.wait()

    async def publisher() -> None:
        await marked.wait()
        await upload(hub, nxt)
        body = signed_manifest("stable", 3, KEYS, ((nxt.flist_id, len(nxt.flist_bytes)),))
        await hub.pub.put(layout.manifest_path("stable"), body, int(time.time()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(publisher)
        report = await collect(hub.storage, GcPolicy(grace_s=DAY, keep=1),
                               lock=watched(gc_side.publish_lock, gc_wants),
                               after_mark=after_mark)
    print(f"gc waited for the publish: rescued {report.rescued}, deleted "
          f"{report.deleted['blocks']} blocks in {report.batches} batches")
    assert report.rescued >= len(reused) and report.lost == []
    assert report.deleted['flists'] == 1  # v1's flist went; its blocks are all nxt's
    assert all((hub.dir / layout.block_path(b)).exists() for b in nxt.block_ids)
    assert assert_every_flist_whole(hub.dir) >= len(nxt.block_ids)
    assert (await verify(hub.storage)).problems == []
    await hub_side.aclose()
    await gc_side.aclose()


async def test_a_manifest_reusing_a_doomed_flist_waits_then_is_refused(tmp_path: Path) -> None:
    """Likewise for a manifest: it pins the retired release's (old, doomed) flist
    again while gc holds the lock in its flist batch; it waits, is refused
    missing-flists, and nothing stored pins a deleted flist."""
    hub, retired, _, _, db = await _retired_and_next(tmp_path)
    hub_side, gc_side = Registry(SqliteRegistry(str(db))), Registry(SqliteRegistry(str(db)))
    publish_wants = trio.Event()
    hub.pub = Publisher(hub.storage, lock=watched(hub_side.publish_lock, publish_wants))
    await hub.pub.load_roots()
    in_lock = trio.Event()
    refused: list[str] = []

    async def held(phase: str) -> None:
        if phase == "flists" and not in_lock.is_set():
            in_lock.set()
            with trio.move_on_after(10):  # a publish that takes no lock never asks
                await publish_wants.wait()
            await trio.sleep(0.3)

    async def publisher() -> None:
        await in_lock.wait()
        body = signed_manifest("stable", 3, KEYS,
                               ((retired.flist_id, len(retired.flist_bytes)),))
        try:
            await hub.pub.put(layout.manifest_path("stable"), body, int(time.time()))
        except PublishRefused as exc:
            refused.append(exc.reason)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(publisher)
        report = await collect(hub.storage, GcPolicy(grace_s=DAY, keep=1),
                               lock=gc_side.publish_lock, in_batch=held)
    assert refused == ["missing-flists"]
    assert stored_manifest((hub.dir / layout.manifest_path("stable")).read_bytes()).version == 2
    assert report.lost == [] and report.deleted['flists'] == 1
    for record in (hub.dir / paths.releases_folder("stable")).iterdir():
        for pin in stored_manifest(record.read_bytes()).flists:
            assert (hub.dir / layout.flist_path(pin.id)).exists()
    assert_every_flist_whole(hub.dir)
    assert (await verify(hub.storage)).problems == []
    await hub_side.aclose()
    await gc_side.aclose()


class SlowHeads(LocalStorage):
    """Each presence check takes 2 ms (an S3 HEAD); one given key fails."""

    failing: str | None = None
    asked = 0

    async def exists(self, key: str) -> bool:
        self.asked += 1
        await trio.sleep(0.002)
        if key == self.failing:
            raise StorageError(f"S3 HEAD {key}: HTTP 500")
        return await super().exists(key)


async def test_an_flists_presence_check_under_the_lock_asks_8_at_a_time(
        autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    """The check holds the publish lock (gc waits for it): 1,400 HEADs of 2 ms take
    0.35 s, not 2.8 s; a store failure is one StorageError (the hub's 503)."""

    storage = SlowHeads(str(tmp_path / "data"))
    await storage.prepare()
    pub = Publisher(storage)
    image = image_of(random_tree(tmp_path / "t", 3, 95), tmp_path / "st")
    for bid in image.block_ids:
        await pub.put(layout.block_path(bid), image.store.get_block(bid), int(time.time()))
    keys = [layout.block_path(b) for b in image.block_ids] * 700
    storage.asked = 0
    t0 = trio.current_time()
    assert await pub.missing(keys) == []
    took = trio.current_time() - t0
    print(f"{len(keys)} presence checks of 2 ms: {took:.2f} s under the lock")
    assert storage.asked == len(keys) and took < len(keys) * 0.002 / 4
    absent = layout.block_path("ab" * 32)
    assert await pub.missing(keys[:5] + [absent] + keys[:5]) == [absent]
    storage.failing = keys[3]
    with pytest.raises(StorageError):
        await pub.put(layout.flist_path(image.flist_id), image.flist_bytes, int(time.time()))
    assert not (tmp_path / "data" / layout.flist_path(image.flist_id)).exists()


def zosnode(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zosnode", *argv], capture_output=True,
                          text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


async def test_verify_names_a_flipped_bit_and_a_truncated_flist(tmp_path: Path) -> None:
    hub = await new_hub(tmp_path / "data")
    a = image_of(random_tree(tmp_path / "a", 6, 20), tmp_path / "sa")
    await release(hub, 1, a)
    ok = zosnode("hub", "verify", "--data", str(hub.dir), "--json")
    assert ok.returncode == 0, ok.stderr
    summary = json.loads(ok.stdout)
    assert summary["problems"] == [] and summary["objects"] > len(a.block_ids)
    print(f"verify: {summary['objects']} objects, {summary['bytes']} bytes in "
          f"{summary['seconds']:.3f} s")
    victim = hub.dir / layout.block_path(a.block_ids[1])
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x10
    victim.write_bytes(bytes(data))
    flist = hub.dir / layout.flist_path(a.flist_id)
    flist.write_bytes(flist.read_bytes()[:-7])
    bad = zosnode("hub", "verify", "--data", str(hub.dir))
    assert bad.returncode == 1, bad.stderr
    lines = bad.stdout.splitlines()
    assert [ln for ln in lines if ln.startswith(layout.block_path(a.block_ids[1]))]
    assert [ln for ln in lines if ln.startswith(layout.flist_path(a.flist_id))]
    assert len(lines) == 2, lines
    # and gc refuses to decide from a store whose retained flist is broken
    gc = zosnode("hub", "gc", "--data", str(hub.dir), "--grace", "1d")
    assert gc.returncode == 2 and "does not decode" in gc.stderr


class Interrupt(Exception):
    pass


class StopAfter(Progress):
    def __init__(self, n: int) -> None:
        self.left = n
        self.copying = False

    def phase(self, name: str, objects: int, size: int) -> None:
        self.copying = name == "copy"

    def add(self, objects: int, size: int) -> None:
        if self.copying:
            self.left -= objects
            if self.left <= 0:
                raise Interrupt


def assert_never_dangling(mirror_dir: Path) -> None:
    """Everything a mirror holds points only at what it holds."""
    have = blocks_on(mirror_dir)
    for f in (mirror_dir / "flists").glob("*"):
        assert set(decode(f.read_bytes()).blocks()) <= have


async def test_mirror_resumes_and_is_served_by_nginx(tmp_path: Path) -> None:
    hub = await new_hub(tmp_path / "data")
    a = image_of(random_tree(tmp_path / "a", 9, 30), tmp_path / "sa")
    await release(hub, 1, a)
    target = LocalStorage(str(tmp_path / "mirror"))
    total = len(await inventory.walk(hub.storage))
    with pytest.raises(BaseException) as cut:
        await mirror(hub.storage, target, parallel=2, progress=StopAfter(4))
    assert cut.group_contains(Interrupt) if isinstance(cut.value, BaseExceptionGroup) \
        else isinstance(cut.value, Interrupt)
    first = len(await inventory.walk(target))
    assert 0 < first < total
    assert not (tmp_path / "mirror" / layout.manifest_path("stable")).exists()
    assert_never_dangling(tmp_path / "mirror")
    dry = await mirror(hub.storage, target, dry_run=True)
    assert dry.copied == total - first and len(await inventory.walk(target)) == first
    report = await mirror(hub.storage, target)
    print(f"mirror: resumed, copied {report.copied} of {total} "
          f"({report.bytes_copied} bytes) in {report.seconds:.3f} s")
    assert report.copied == total - first and report.present == first
    assert report.refused == []
    assert (await verify(target)).problems == []
    again = await mirror(hub.storage, target)
    assert again.copied == 0

    with nginx(tmp_path / "mirror", tmp_path / "nginx") as web:
        bid = a.block_ids[0]
        block = urllib.request.urlopen(f"{web.url}/{layout.block_path(bid)}", timeout=10).read()
        assert layout.object_id(block) == bid
        head = urllib.request.urlopen(f"{web.url}/{layout.manifest_path('stable')}",
                                      timeout=10).read()
        assert head == (hub.dir / layout.manifest_path("stable")).read_bytes()


async def test_mirror_refuses_a_bad_block_and_what_needs_it(tmp_path: Path) -> None:
    hub = await new_hub(tmp_path / "data")
    a = image_of(random_tree(tmp_path / "a", 3, 40), tmp_path / "sa")
    await release(hub, 1, a)
    victim = hub.dir / layout.block_path(a.block_ids[0])
    victim.write_bytes(victim.read_bytes() + b"x")
    target = LocalStorage(str(tmp_path / "mirror"))
    report = await mirror(hub.storage, target)
    refused = {line.split(":")[0] for line in report.refused}
    # the block, the flist that needs it, the release and the channel pointer
    assert refused == {layout.block_path(a.block_ids[0]), layout.flist_path(a.flist_id),
                       paths.release_path("stable", 1), layout.manifest_path("stable")}
    assert not (tmp_path / "mirror" / layout.manifest_path("stable")).exists()


CREDS = ("zosmaint", "zosmaint-secret-key-for-tests")


@pytest.mark.slow
async def test_verify_gc_and_mirror_on_seaweedfs(tmp_path: Path) -> None:
    """The same commands on a real S3 store: mirror a hub directory into a bucket
    and that bucket into a second one, verify both, gc an orphan by its
    LastModified, mirror the bucket back to a directory, flip a bit and truncate
    an flist in the bucket and see verify name both."""
    from tests.lab.netns import nsexec
    from tests.lab.seaweed import seaweed

    hub = await new_hub(tmp_path / "data")
    a = image_of(random_tree(tmp_path / "a", 6, 50), tmp_path / "sa")
    orphan = image_of(random_tree(tmp_path / "o", 1, 51), tmp_path / "so")
    await release(hub, 1, a)
    for bid in orphan.block_ids:
        await hub.pub.put(layout.block_path(bid), orphan.store.get_block(bid), int(time.time()))
    total = len(await inventory.walk(hub.storage))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(PYTHONPATH=str(REPO), AWS_ACCESS_KEY_ID=CREDS[0],
               AWS_SECRET_ACCESS_KEY=CREDS[1])

    with seaweed(tmp_path / "weed", credentials=CREDS) as sw:
        bucket = ["--store", "s3://zosmaint/hub", "--s3-endpoint", sw.endpoint]

        def run(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(nsexec(sw.ns, sys.executable, "-m", "zosnode", *argv),
                                  capture_output=True, text=True, cwd=REPO, env=env,
                                  timeout=300)

        up = run("hub", "mirror", "--data", str(hub.dir), "--to", "s3://zosmaint/hub",
                 "--to-s3-endpoint", sw.endpoint, "--json")
        assert up.returncode == 0, up.stderr
        assert json.loads(up.stdout)["copied"] == total
        ok = run("hub", "verify", *bucket, "--json")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        summary = json.loads(ok.stdout)
        print(f"verify on SeaweedFS: {summary['objects']} objects, {summary['bytes']} bytes "
              f"in {summary['seconds']:.3f} s")
        assert summary["objects"] == total and summary["problems"] == []
        # bucket to bucket: a second bucket on the same store
        second = run("hub", "mirror", *bucket, "--to", "s3://zosmaint2", "--json")
        assert second.returncode == 0, second.stderr
        assert json.loads(second.stdout)["copied"] == total
        ok2 = run("hub", "verify", "--store", "s3://zosmaint2", "--s3-endpoint", sw.endpoint,
                  "--json")
        assert ok2.returncode == 0 and json.loads(ok2.stdout)["objects"] == total
        time.sleep(1.1)  # LastModified has one-second resolution
        refused = run("hub", "gc", *bucket, "--grace", "0s")
        assert refused.returncode == 2 and "--no-lock" in refused.stderr, refused.stderr
        gc = run("hub", "gc", *bucket, "--grace", "0s", "--json", "--no-lock")  # no hub here
        assert gc.returncode == 0, gc.stderr
        report = json.loads(gc.stdout)
        print(f"gc on SeaweedFS: {report['objects_scanned']} objects in "
              f"{report['seconds']:.3f} s")
        assert report["deleted"]["blocks"] == len(orphan.block_ids)
        assert report["deleted"]["flists"] == 0 and report["live"]["blocks"] == len(a.block_ids)
        back = tmp_path / "back"
        down = run("hub", "mirror", *bucket, "--to", str(back), "--json")
        assert down.returncode == 0, down.stderr
        assert (await verify(LocalStorage(str(back)))).problems == []
        assert blocks_on(back) == set(a.block_ids)

        # Damage two objects in the bucket, through the S3 API.
        bad_block = layout.block_path(a.block_ids[0])
        flipped = bytearray((hub.dir / bad_block).read_bytes())
        flipped[0] ^= 0x01
        (tmp_path / "flipped").write_bytes(bytes(flipped))
        flist_key = layout.flist_path(a.flist_id)
        (tmp_path / "cut").write_bytes((hub.dir / flist_key).read_bytes()[:-3])
        script = (
            "import sys, trio\n"
            "from zosnode.hub.s3 import S3Storage\n"
            "s = S3Storage.from_url('s3://zosmaint/hub', sys.argv[1])\n"
            "async def main():\n"
            "    for key, path in zip(sys.argv[2::2], sys.argv[3::2]):\n"
            "        await s.put(key, open(path, 'rb').read())\n"
            "    await s.aclose()\n"
            "trio.run(main)\n")
        damage = subprocess.run(
            nsexec(sw.ns, sys.executable, "-c", script, sw.endpoint, bad_block,
                   str(tmp_path / "flipped"), flist_key, str(tmp_path / "cut")),
            capture_output=True, text=True, cwd=REPO, env=env, timeout=60)
        assert damage.returncode == 0, damage.stderr
        bad = run("hub", "verify", *bucket)
        assert bad.returncode == 1, bad.stderr
        named = {line.split(":")[0] for line in bad.stdout.splitlines()}
        assert named == {bad_block, flist_key}, bad.stdout


def test_the_meter_line_counts_rate_and_time_left() -> None:
    from zosnode.cli.meter import MeterState

    state = MeterState("copy", objects=10, size=10 * 1048576, done_objects=5,
                       done_bytes=5 * 1048576, started=100.0)
    assert state.line(102.0) == "copy: 5/10 objects, 5.0 MiB/10.0 MiB, 2.5 MiB/s, 2 s left"
    unknown = MeterState("list", started=0.0, done_objects=3)
    assert unknown.line(1.0) == "list: 3 objects, 0 B, 0 B/s"


def test_a_root_gap_and_a_stranger_signed_manifest_are_named() -> None:
    from zosnode.hub.verify import check_manifest, check_root_chain

    r1 = signed_root(1, KEYS, KEYS, 1)
    r3 = signed_root(3, KEYS, KEYS, 1)
    chain, problems = check_root_chain({1: r1, 3: r3})
    assert len(chain) == 1
    assert [p.line() for p in problems] == [f"{layout.root_path(3)}: gap: no root 2"]
    stranger = signed_manifest("stable", 1, [key("someone else")])
    _, what = check_manifest("k", stranger, chain, "stable", 1)
    assert what is not None and "threshold" in what
    ours = signed_manifest("stable", 1, KEYS)
    assert check_manifest("k", ours, chain, "stable", 1)[1] is None
    assert check_manifest("k", ours, chain, "stable", 2)[1] == "holds version 1"
    assert check_manifest("k", ours, chain, "beta", None)[1] == "is for channel 'stable'"


async def test_gc_cli_dry_run_json_and_user_mistakes(tmp_path: Path) -> None:
    hub = await new_hub(tmp_path / "data")
    orphan = image_of(random_tree(tmp_path / "o", 2, 60), tmp_path / "so")
    await upload(hub, orphan)
    age_everything(hub.dir, 2 * DAY)
    before = blocks_on(hub.dir)
    dry = zosnode("hub", "gc", "--data", str(hub.dir), "--grace", "1d", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    doc = json.loads(dry.stdout)
    assert doc["dry_run"] and doc["deleted"] == {"blocks": len(before), "flists": 1, "releases": 0}
    assert blocks_on(hub.dir) == before
    assert dry.stderr == ""  # stdout is not a terminal: no progress line
    real = zosnode("hub", "gc", "--data", str(hub.dir), "--grace", "1d")
    assert real.returncode == 0 and blocks_on(hub.dir) == set()
    for argv, says in [
        (["hub", "gc", "--data", str(hub.dir), "--grace", "soon"], "duration"),
        (["hub", "gc", "--data", str(tmp_path / "nope"), "--grace", "1h"], "no such directory"),
        (["hub", "verify", "--store", "s3://b"], "--s3-endpoint"),
        # a bucket and no registry: gc cannot take the hubs' publish lock
        (["hub", "gc", "--store", "s3://b", "--s3-endpoint", "http://127.0.0.1:9",
          "--grace", "1h"], "--no-lock"),
        (["hub", "gc", "--data", str(hub.dir), "--grace", "1h", "--no-lock", "--registry",
          "sqlite:x"], "not both"),
        (["hub", "gc", "--data", str(hub.dir), "--grace", "1h", "--registry", "mysql://x"],
         "expected postgresql"),
        (["hub", "mirror", "--data", str(hub.dir), "--to", "s3://b"], "endpoint"),
    ]:
        out = zosnode(*argv)
        assert out.returncode == 2, (argv, out.stderr)
        assert says in out.stderr and "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1


def test_gc_process_held_while_hub_push_publishes_through_a_live_hub(tmp_path: Path) -> None:
    """The race end to end: a real hub, `hub push` over HTTP, `hub gc` as a process
    held between its mark and its sweep (ZOSNODE_TEST_GC_HOLD) while the next
    release, reusing a retired release's blocks, is pushed and committed."""
    from tests.hub.conftest import spawn_hub
    from zosnode.trust.keyfile import HEADER

    publisher = key("maint publisher")
    keyfile = tmp_path / "pub.key"
    keyfile.write_text(f"{HEADER}\n{bytes(publisher).hex()}\n")
    keyfile.chmod(0o600)
    data = tmp_path / "data"
    data.mkdir()
    retired_src = random_tree(tmp_path / "retired", 6, 70)
    retired = image_of(retired_src, tmp_path / "s-retired")
    kept = image_of(random_tree(tmp_path / "kept", 3, 71), tmp_path / "s-kept")
    nxt_src = tmp_path / "next"
    shutil.copytree(retired_src, nxt_src)
    (nxt_src / "new").write_bytes(os.urandom(250_000))
    nxt = image_of(nxt_src, tmp_path / "s-next")
    (tmp_path / "root1").write_bytes(signed_root(1, KEYS, KEYS, 1))
    hub = spawn_hub(data, tmp_path / "hub.log", "--publisher", publisher.verify_key.encode().hex())
    try:
        url = f"http://{hub.host}:{hub.port}"

        def push(image: Image, version: int, *extra: str) -> None:
            manifest = tmp_path / f"m{version}"
            manifest.write_bytes(signed_manifest(
                "stable", version, KEYS, ((image.flist_id, len(image.flist_bytes)),)))
            out = zosnode("hub", "push", "--hub", url, "--key", str(keyfile), "--store",
                          str(image.store.path), "--manifest", str(manifest), *extra)
            assert out.returncode == 0, out.stderr

        push(retired, 1, "--root", str(tmp_path / "root1"))
        push(kept, 2)
        for sub in (layout.BLOCKS, layout.FLISTS, layout.CHANNELS, layout.ROOTS):
            age_everything(data / sub, 3 * DAY)
        hold = tmp_path / "hold"
        gc = subprocess.Popen(
            [sys.executable, "-m", "zosnode", "hub", "gc", "--data", str(data), "--grace", "1d",
             "--keep", "1", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), "ZOSNODE_TEST_GC_HOLD": str(hold)})
        try:
            end = time.monotonic() + 60
            while not Path(f"{hold}.marked").exists():
                assert gc.poll() is None, gc.stderr.read() if gc.stderr else ""
                assert time.monotonic() < end, "gc never finished its mark"
                time.sleep(0.05)
            push(nxt, 3)  # the hub has the reused blocks: push sends only the new ones
            hold.touch()
            out, err = gc.communicate(timeout=120)
        finally:
            if gc.poll() is None:
                gc.kill()
                gc.wait()
        assert gc.returncode == 0, err
        report = json.loads(out)
        print(f"gc held across a push: deleted {report['deleted']['blocks']} blocks, "
              f"rescued {report['rescued']}")
        assert report["lost"] == [] and report["rescued"] > 0
        # what did go: the retired release's record and its flist
        assert (report["deleted"]["releases"], report["deleted"]["flists"]) == (1, 1)
        missing = [b for b in nxt.block_ids if not (data / layout.block_path(b)).exists()]
        assert missing == []
        check = zosnode("hub", "verify", "--data", str(data))
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        assert hub.stop() == 0


@pytest.mark.parametrize("phase", ["flists", "blocks"])
def test_hub_push_waits_for_gc_holding_the_lock_and_resends_what_it_deleted(
        tmp_path: Path, phase: str) -> None:
    """End to end: `hub gc` (a process) holds the publish lock inside its first
    flist or block batch (ZOSNODE_TEST_GC_HOLD_IN); `hub push` meanwhile publishes
    v3, which reuses v1's retired flist (flists) or v1's retired blocks (blocks).
    Its publication waits for the lock, is refused (the objects are gone), and
    push sends them again and retries by itself: exit 0, nothing dangling."""
    from tests.hub.conftest import spawn_hub
    from zosnode.trust.keyfile import HEADER

    publisher = key("maint publisher")
    keyfile = tmp_path / "pub.key"
    keyfile.write_text(f"{HEADER}\n{bytes(publisher).hex()}\n")
    keyfile.chmod(0o600)
    data = tmp_path / "data"
    data.mkdir()
    retired_src = random_tree(tmp_path / "retired", 6, 90)
    retired = image_of(retired_src, tmp_path / "s-retired")
    kept = image_of(random_tree(tmp_path / "kept", 3, 91), tmp_path / "s-kept")
    nxt_src = tmp_path / "next"
    shutil.copytree(retired_src, nxt_src)
    (nxt_src / "new").write_bytes(os.urandom(250_000))
    nxt = image_of(nxt_src, tmp_path / "s-next")
    third = retired if phase == "flists" else nxt
    (tmp_path / "root1").write_bytes(signed_root(1, KEYS, KEYS, 1))
    hub = spawn_hub(data, tmp_path / "hub.log", "--publisher", publisher.verify_key.encode().hex())
    try:
        url = f"http://{hub.host}:{hub.port}"

        def push_argv(image: Image, version: int, *extra: str) -> list[str]:
            manifest = tmp_path / f"m{version}"
            manifest.write_bytes(signed_manifest(
                "stable", version, KEYS, ((image.flist_id, len(image.flist_bytes)),)))
            return [sys.executable, "-m", "zosnode", "hub", "push", "--hub", url, "--key",
                    str(keyfile), "--store", str(image.store.path), "--manifest",
                    str(manifest), *extra]

        env = {**os.environ, "PYTHONPATH": str(REPO)}
        for image, version, extra in ((retired, 1, ("--root", str(tmp_path / "root1"))),
                                      (kept, 2, ())):
            done = subprocess.run(push_argv(image, version, *extra), capture_output=True,
                                  text=True, cwd=REPO, env=env, timeout=120)
            assert done.returncode == 0, done.stderr
        for sub in (layout.BLOCKS, layout.FLISTS, layout.CHANNELS, layout.ROOTS):
            age_everything(data / sub, 3 * DAY)
        hold = tmp_path / "hold"
        gc = subprocess.Popen(
            [sys.executable, "-m", "zosnode", "hub", "gc", "--data", str(data), "--grace", "1d",
             "--keep", "1", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=REPO,
            env={**env, "ZOSNODE_TEST_GC_HOLD": str(hold), "ZOSNODE_TEST_GC_HOLD_IN": phase})
        pusher = None
        try:
            end = time.monotonic() + 60
            while not Path(f"{hold}.marked").exists():
                assert gc.poll() is None, gc.stderr.read() if gc.stderr else ""
                assert time.monotonic() < end, "gc never reached its batch"
                time.sleep(0.05)
            started = time.monotonic()
            pusher = subprocess.Popen(push_argv(third, 3), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
            time.sleep(2.0)  # push asks what the hub lacks and reaches the lock
            assert pusher.poll() is None, "push did not wait for gc's lock"
            hold.touch()
            out, err = gc.communicate(timeout=120)
            pushed, push_err = pusher.communicate(timeout=120)
            print(f"push held {time.monotonic() - started:.2f} s behind gc's {phase} batch")
        finally:
            for proc in (gc, pusher):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
        assert gc.returncode == 0, err
        assert pusher.returncode == 0, push_err
        assert "since we asked (hub gc?)" in push_err, push_err
        report = json.loads(out)
        print(f"gc: deleted {report['deleted']['flists']} flists, {report['deleted']['blocks']} "
              f"blocks in {report['batches']} batches, longest hold {report['max_hold_s']:.3f}"
              f" s; push: {pushed.strip()}")
        assert report["lost"] == [] and report["locked"]
        assert report["deleted"][phase] > 0
        assert_every_flist_whole(data)
        head = stored_manifest((data / layout.manifest_path("stable")).read_bytes())
        assert head.version == 3 and [p.id for p in head.flists] == [third.flist_id]
        check = zosnode("hub", "verify", "--data", str(data))
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        assert hub.stop() == 0


@pytest.mark.slow
def test_after_gc_the_retained_release_boots_a_node_in_the_namespace_lab(
        tmp_path: Path) -> None:
    """Releases 1 and 2 published, release 1 retired (`--keep 1`, its tag removed),
    gc deletes its own blocks; `hub verify` is clean and a node booted in the lab
    reaches release 2 from what is left."""
    from examples import demo_os
    from examples.demo import Lab
    from tests.lab.netns import require_root
    from zosnode.flist.view import FlistView

    require_root()
    if shutil.which("dnsmasq") is None:
        pytest.skip("needs dnsmasq (Debian package dnsmasq-base)")
    lab = Lab(tmp_path, say=lambda _t: None)
    try:
        kit = lab.kit = demo_os.build(tmp_path / "kit")
        lab.network()
        lab.start_hub()
        lab.publish(1, first=True)
        lab.publish(2)
        data = lab.hub_data
        (data / paths.tag_path("demo-1")).unlink()
        for sub in (layout.BLOCKS, layout.FLISTS, layout.CHANNELS, layout.ROOTS):
            age_everything(data / sub, 3 * DAY)
        store = LocalStore(kit.store)
        v1, v2 = (set(FlistView.from_bytes(store.resolve(t)).flist.blocks())
                  for t in ("demo-1", "demo-2"))
        assert v1 - v2
        gc = zosnode("hub", "gc", "--data", str(data), "--grace", "1d", "--keep", "1", "--json")
        assert gc.returncode == 0, gc.stderr
        report = json.loads(gc.stdout)
        assert report["deleted"]["releases"] == 1 and report["deleted"]["flists"] == 1
        assert report["deleted"]["blocks"] == len(v1 - v2)
        assert not any((data / layout.block_path(b)).exists() for b in v1 - v2)
        check = zosnode("hub", "verify", "--data", str(data))
        assert check.returncode == 0, check.stdout + check.stderr
        lab.start_node(poll_ms=1500, readiness_ms=6000)
        node_id = lab.wait_node(r"zosnode: ready 2 ([0-9a-f]{64})$", 90).group(1)
        print(f"node {node_id[:12]} booted release 2 after gc deleted "
              f"{report['deleted']['blocks']} block(s)")
    finally:
        lab.close()


def test_mirror_killed_midway_then_rerun_copies_only_the_rest(tmp_path: Path) -> None:
    """SIGKILL in the middle of a mirror: what is on the target is whole, and the
    rerun copies exactly what is missing."""
    import signal

    src = tmp_path / "data"
    (src / layout.FLISTS).mkdir(parents=True)
    ids = []
    for _ in range(1200):  # enough that the poll below sees it midway
        block = os.urandom(16 * 1024)
        bid = layout.object_id(block)
        path = src / layout.block_path(bid)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(block)
        ids.append(bid)
    target = tmp_path / "mirror"
    proc = subprocess.Popen(
        [sys.executable, "-m", "zosnode", "hub", "mirror", "--data", str(src), "--to",
         str(target), "--parallel", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        end = time.monotonic() + 60
        while len(blocks_on(target)) < 40:
            assert proc.poll() is None, "mirror finished before it could be interrupted"
            assert time.monotonic() < end
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    done = blocks_on(target)
    assert 0 < len(done) < len(ids)
    for bid in done:  # whole or absent: the atomic write never shows half a block
        assert layout.object_id((target / layout.block_path(bid)).read_bytes()) == bid
    rerun = zosnode("hub", "mirror", "--data", str(src), "--to", str(target), "--json")
    assert rerun.returncode == 0, rerun.stderr
    doc = json.loads(rerun.stdout)
    assert doc["copied"] == len(ids) - len(done) and doc["present"] == len(done)
    assert blocks_on(target) == set(ids)
