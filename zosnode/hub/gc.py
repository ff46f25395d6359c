"""`hub gc`: delete the blocks and flists no retained release, tag or recent
publication needs, safely beside a publish in progress.

Retention (what is kept, whatever its age):

- every channel's current manifest and, of its release records
  (`releases/<N>.manifest`), the newest `keep` (all of them by default),
  plus every record newer than the current manifest (a publish writes the
  record first, then the pointer);
- every flist those manifests pin, every flist a tag names, and every flist
  younger than the grace period (a publish uploads flists before the
  manifest that pins them);
- every block those flists reference, and every block younger than the
  grace period (a publish uploads blocks before the flist that lists them).

Everything else older than the grace period (object mtime / S3
LastModified) is deleted: release records outside `keep` first, then
flists, then blocks, so nothing left ever points at what is gone.

The race with a publish: new objects are young, so the grace period keeps
them. The danger is an old, unreferenced block or flist that a publish
starts to use again (push asks what the hub lacks, so it does not upload it
again). The hub checks that an flist's blocks, a tag's flist and a
manifest's flists are present, and writes it, under the shared publish lock
(the registry's: an flock beside the SQLite file, or a PostgreSQL advisory
lock). gc deletes in batches (at most BATCH_MAX deletes and BATCH_S seconds
of deleting per batch, never across phases), each under that same lock and
after a re-read, under the lock, of the flists, tags, channel pointers and
release records: whatever appeared since is marked live (with what it
references) and kept. So, for a publish that reuses a doomed object:

- committed before the batch took the lock: the re-read sees it, the object
  is kept;
- checked after the batch released the lock: the object is already gone,
  the hub refuses the publication (missing-blocks / missing-flists), and
  `hub push` sends what the hub now lacks and retries once.

So, as long as gc and every hub publishing to the store use the same
registry (hence the same lock), no flist, tag or manifest a hub accepts
ever names an object gc deleted.
Each object is also stat'ed just before its delete and kept if it has
become young (uploaded again). Without the lock (`lock=None`: `--no-lock`,
only safe when no hub is publishing) the re-reads still run before each
batch, and a last re-read names anything now live that was deleted
(`lost`, exit 1: re-run `hub push`). With the lock, `lost` stays empty.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

from zosnode import layout
from zosnode.errors import ZosError
from zosnode.flist import format as flist_format
from zosnode.flist.errors import FlistError
from zosnode.hub import inventory, paths
from zosnode.hub.inventory import Listed
from zosnode.hub.objects import ObjectKind, parse_path, release_version
from zosnode.hub.publish import stored_manifest
from zosnode.hub.storage import Storage
from zosnode.progress import Progress
from zosnode.trust.errors import TrustError

# One lock hold: publishes wait at most about this long for a batch.
BATCH_MAX = 256
BATCH_S = 1.0
Lock = Callable[[], AbstractAsyncContextManager[None]]


class GcError(ZosError):
    """gc cannot decide safely (a retained manifest or flist does not decode)."""


@dataclass(frozen=True)
class GcPolicy:
    grace_s: float
    keep: int | None = None  # release records per channel; None: all

    def __post_init__(self) -> None:
        if self.grace_s < 0:
            raise ValueError("the grace period cannot be negative")
        if self.keep is not None and self.keep < 1:
            raise ValueError("--keep must be at least 1")


KINDS = ("releases", "flists", "blocks")  # the sweep's order: what refers first goes first


def _per_kind() -> dict[str, int]:
    return dict.fromkeys(KINDS, 0)


@dataclass
class GcReport:
    dry_run: bool = False
    locked: bool = False
    objects_scanned: int = 0
    bytes_scanned: int = 0
    # Per kind (KINDS): what the mark found referenced, and what the sweep
    # deleted (or would have, on a dry run).
    live: dict[str, int] = field(default_factory=_per_kind)
    deleted: dict[str, int] = field(default_factory=_per_kind)
    bytes_freed: int = 0
    kept_young: int = 0
    rescued: int = 0
    lost: list[str] = field(default_factory=list)
    batches: int = 0
    max_hold_s: float = 0.0  # the longest lock hold (re-read and deletes)
    seconds: float = 0.0


Hook = Callable[[], Awaitable[None]]
BatchHook = Callable[[str], Awaitable[None]]


async def _nothing() -> None:
    return None


async def _nothing_in(_phase: str) -> None:
    return None


@asynccontextmanager
async def _unlocked() -> AsyncIterator[None]:
    yield


def retained_versions(versions: list[int], head: int | None, keep: int | None) -> set[int]:
    """Which release records of one channel are kept (pure)."""
    ordered = sorted(versions)
    kept = set(ordered if keep is None else ordered[-keep:])
    if head is not None:
        kept |= {v for v in ordered if v >= head}
    return kept


class _Marker:
    """The live set, grown by each (re-)read of the store's pointers."""

    def __init__(self, storage: Storage, policy: GcPolicy) -> None:
        self.storage = storage
        self.policy = policy
        self.flists: set[str] = set()
        self.blocks: set[str] = set()
        self.releases: set[str] = set()  # keys of retained release records
        self.seen_flists: set[str] = set()
        self.absent: set[str] = set()  # live flists not stored (yet)
        self.manifests = 0
        self.reads = 0

    async def _bytes(self, key: str) -> bytes | None:
        return await inventory.read(self.storage, key)

    async def _manifest_flists(self, key: str) -> list[str]:
        data = await self._bytes(key)
        if data is None:
            return []  # replaced or removed meanwhile: its successor is read too
        try:
            return [p.id for p in stored_manifest(data).flists]
        except TrustError as exc:
            raise GcError(f"{key} does not decode ({exc}): fix it first (hub verify)") from None

    async def mark_flist(self, fid: str) -> None:
        if fid in self.flists and fid not in self.absent:
            return
        self.flists.add(fid)
        data = await self._bytes(layout.flist_path(fid))
        if data is None:
            # Pinned but missing (hub verify's business): read again at the next
            # re-read, in case a publish uploads it meanwhile.
            self.absent.add(fid)
            return
        self.absent.discard(fid)
        try:
            self.blocks.update(flist_format.decode(data).blocks())
        except FlistError as exc:
            raise GcError(f"flist {fid} does not decode ({exc}): fix it first") from None

    async def read(self, now: float, flists: list[Listed] | None = None) -> None:
        """Mark from everything the store points at now."""
        storage = self.storage
        for channel in await inventory.names(storage, layout.CHANNELS):
            try:
                head_key = layout.manifest_path(channel)
            except layout.LayoutError:
                continue
            head: int | None = None
            head_data = await self._bytes(head_key)
            if head_data is not None:
                try:
                    m = stored_manifest(head_data)
                except TrustError as exc:
                    raise GcError(f"{head_key} does not decode ({exc})") from None
                head = m.version
                self.manifests += 1
                for fid in (p.id for p in m.flists):
                    await self.mark_flist(fid)
            names = await inventory.names(storage, paths.releases_folder(channel))
            versions = [v for v in map(release_version, names) if v is not None]
            for v in retained_versions(versions, head, self.policy.keep):
                key = paths.release_path(channel, v)
                if key not in self.releases:
                    self.releases.add(key)
                    self.manifests += 1
                    for fid in await self._manifest_flists(key):
                        await self.mark_flist(fid)
        for name in await inventory.names(storage, paths.TAGS):
            if not paths.is_tag(name):
                continue
            data = await self._bytes(paths.tag_path(name))
            if data is not None and len(data) == 65 and layout.is_hex_id(data[:64].decode()):
                await self.mark_flist(data[:64].decode())
        if flists is None:
            flists = await inventory.walk(storage, [layout.FLISTS])
        young = now - self.policy.grace_s
        known = set(self.seen_flists) if self.reads else None
        self.reads += 1
        for obj in flists:
            parsed = parse_path(obj.key)
            if parsed is None or parsed.object_id is None:
                continue
            fid = parsed.object_id
            # Young, or new since the first read (an upload in flight): live.
            if obj.mtime >= young or (known is not None and fid not in known):
                await self.mark_flist(fid)
            self.seen_flists.add(fid)


async def collect(storage: Storage, policy: GcPolicy, *, now: Callable[[], float] = time.time,
                  dry_run: bool = False, progress: Progress | None = None,
                  lock: Lock | None = None, after_mark: Hook = _nothing,
                  in_batch: BatchHook = _nothing_in, recheck: bool = True) -> GcReport:
    """Run gc on `storage`, each delete batch under `lock` (the hubs' publish lock;
    None: no lock). `after_mark` runs between the mark and the sweep, `in_batch`
    inside each batch's lock hold after its re-read (tests force races there);
    `recheck=False` turns the re-reads off (for the test that shows they matter)."""
    meter = progress or Progress()
    started = time.monotonic()
    report = GcReport(dry_run=dry_run, locked=lock is not None)
    t0 = now()
    meter.phase("list", 0, 0)
    objects = await inventory.walk(storage, [layout.BLOCKS, layout.FLISTS, layout.CHANNELS])
    report.objects_scanned = len(objects)
    report.bytes_scanned = sum(o.size for o in objects)
    meter.add(len(objects), report.bytes_scanned)
    marker = _Marker(storage, policy)
    meter.phase("mark", 0, 0)
    await marker.read(t0, [o for o in objects if o.key.startswith(layout.FLISTS + "/")])
    old = t0 - policy.grace_s
    doomed: dict[str, list[Listed]] = {kind: [] for kind in KINDS}
    for obj in objects:
        parsed = parse_path(obj.key)
        if parsed is None:
            continue
        kind = parsed.kind
        if kind is ObjectKind.RELEASE:
            if obj.key not in marker.releases:
                doomed["releases"].append(obj)
            continue
        if kind not in (ObjectKind.BLOCK, ObjectKind.FLIST):
            continue
        live = marker.blocks if kind is ObjectKind.BLOCK else marker.flists
        if parsed.object_id in live:
            continue
        if obj.mtime >= old:
            report.kept_young += 1
            continue
        doomed["blocks" if kind is ObjectKind.BLOCK else "flists"].append(obj)
    await after_mark()
    deleted_blocks: set[str] = set()
    deleted_flists: set[str] = set()
    hold = lock or _unlocked

    async def sweep(phase: str, obj: Listed) -> None:
        parsed = parse_path(obj.key)
        assert parsed is not None  # only parsed keys were doomed
        if phase == "releases":
            if obj.key in marker.releases:
                report.rescued += 1
                return
        else:
            live = marker.blocks if phase == "blocks" else marker.flists
            if parsed.object_id in live:
                report.rescued += 1
                return
        if not dry_run:
            fresh = await inventory.stat(storage, obj.key)
            if fresh is None:
                return
            if fresh.mtime >= now() - policy.grace_s:
                report.rescued += 1  # uploaded again meanwhile
                return
            await inventory.delete(storage, obj.key)
        if phase != "releases":
            assert parsed.object_id is not None
            (deleted_blocks if phase == "blocks" else deleted_flists).add(parsed.object_id)
        report.deleted[phase] += 1
        report.bytes_freed += obj.size
        meter.add(1, obj.size)

    for phase in KINDS:
        todo = doomed[phase]
        meter.phase(f"delete {phase}", len(todo), sum(o.size for o in todo))
        at = 0
        while at < len(todo):
            async with hold():
                taken = time.monotonic()
                report.batches += 1
                # Under the lock: every flist, tag and manifest a publish
                # committed is visible now, and none can be committed until
                # this batch's deletes are done.
                if recheck:
                    await marker.read(now())
                await in_batch(phase)
                first, end = at, min(len(todo), at + BATCH_MAX)
                deleting = time.monotonic()
                while at < end and (at == first or time.monotonic() - deleting < BATCH_S):
                    await sweep(phase, todo[at])
                    at += 1
                report.max_hold_s = max(report.max_hold_s, time.monotonic() - taken)
    if recheck and not dry_run:
        await marker.read(now())
        # Deleted and needed again is lost only while it is missing: a push
        # refused by a batch re-sends what the batch deleted.
        needed = sorted([layout.block_path(b) for b in deleted_blocks & marker.blocks]
                        + [layout.flist_path(f) for f in deleted_flists & marker.flists])
        report.lost = [key for key in needed if not await storage.exists(key)]
    report.live = {"releases": len(marker.releases), "flists": len(marker.flists),
                   "blocks": len(marker.blocks)}
    report.seconds = time.monotonic() - started
    return report
