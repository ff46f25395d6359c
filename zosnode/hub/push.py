"""`hub push`: publish from a local store, sending only what the hub lacks.

Order matters and follows the hub's rules: roots first (each chains from the
last), then missing blocks, then flists (whose blocks are now all there),
then the manifest (whose flists are now all there). Blocks go over several
keep-alive connections at once; each request is signed separately. A `hub
gc` may delete an old object we reuse between our missing-objects query and
the publication that needs it (the hub then refuses it: missing-blocks /
missing-flists): we ask again, send what is missing and retry that once.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import nacl.signing
import trio

from zosnode import layout
from zosnode.errors import ZosError
from zosnode.flist.format import flist_id
from zosnode.flist.store import LocalStore
from zosnode.http.client import HttpPeerError, Reply, Timeouts, split_url
from zosnode.http.command import ToolClient, base_url
from zosnode.hub import paths
from zosnode.hub.publish import flist_block_ids, stored_manifest
from zosnode.progress import Progress as Meter
from zosnode.trust import envelope
from zosnode.trust.root import MAX_ROOT_BYTES, decode_body
from zosnode.wire.publish_auth import sign_request

MISSING_BATCH = 5_000
# A hub answers a publication after checking all of it (an flist: every block
# it references), so its answer may take a while; bytes must keep moving.
PUSH_TIMEOUTS = Timeouts(connect=10.0, head=60.0, body_idle=30.0)
# The largest answer we read: a missing-objects reply for a full batch is ~400 KB.
MAX_REPLY = 8 * 1024 * 1024


class PushError(ZosError):
    """The hub refused a publication or could not be reached."""


class PushRefused(PushError):
    """The hub refused one publication; `reason` is its label (missing-blocks...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class PushReport:
    """What a push sent: only what the hub lacked (of `blocks_total`, the blocks the
    flists use; likewise flists, roots and tags)."""

    blocks_total: int = 0
    blocks_sent: int = 0
    bytes_sent: int = 0
    flists_sent: int = 0
    roots_sent: int = 0
    tags_sent: int = 0
    manifest: str | None = None


Progress = Callable[[str], None]


class _Hub:
    def __init__(self, url: str, key: nacl.signing.SigningKey, clock: Callable[[], float],
                 parallel: int) -> None:
        self.base = base_url(url)
        self.key = key
        self.clock = clock
        self.client = ToolClient(timeouts=PUSH_TIMEOUTS, per_origin=parallel)
        self.meter: Meter | None = None

    async def call(self, method: str, path: str, body: bytes = b"",
                   signed: bool = False) -> Reply:
        url = self.base + path
        headers = {}
        if signed:
            # What is signed is the request target as sent: the base's path too.
            headers = dict(sign_request(self.key, method, split_url(url)[1], body,
                                        now=int(self.clock())))
        try:
            return await self.client.request(method, url, body=body, headers=headers,
                                             max_size=MAX_REPLY)
        except HttpPeerError as exc:
            raise PushError(str(exc)) from None

    async def put(self, key: str, body: bytes) -> None:
        reply = await self.call("PUT", "/" + key, body, signed=True)
        if reply.status != 201:
            text = reply.body.decode("utf-8", "replace").strip()[:300]
            raise PushRefused(text.split(":", 1)[0] if reply.status == 422 else "",
                              f"hub refused {key}: HTTP {reply.status} {text}")

    async def aclose(self) -> None:
        await self.client.aclose()


async def push(
    store_path: str,
    hub_url: str,
    key: nacl.signing.SigningKey,
    *,
    flists: Sequence[str] = (),
    roots: Sequence[bytes] = (),
    manifest: bytes | None = None,
    parallel: int = 8,
    progress: Progress = lambda _m: None,
    clock: Callable[[], float] = time.time,
    meter: Meter | None = None,
) -> PushReport:
    """Publish; `progress` gets event lines, `meter` (if any) the blocks and bytes
    sent against those to send, instead of a "blocks n/m" line each second."""
    store = LocalStore(store_path)
    report = PushReport()
    hub = _Hub(hub_url, key, clock, max(1, parallel))
    hub.meter = meter
    try:
        for data in roots:
            await _push_root(hub, data, report, progress)
        wanted = list(flists) or _all_flists(store_path)
        encoded = {}
        tags: dict[str, str] = {}
        for name in wanted:
            data = store.resolve(name)
            fid = flist_id(data)
            encoded[fid] = data
            if not layout.is_hex_id(name):
                tags[name] = fid
        if not flists:
            for name in _all_tags(store_path):
                target = store.get_tag(name)
                if target is not None and target in encoded:
                    tags[name] = target
        blocks: dict[str, None] = {}
        for data in encoded.values():
            for bid in flist_block_ids(data):
                blocks.setdefault(bid, None)
        report.blocks_total = len(blocks)
        missing_blocks = await _missing(hub, "blocks", list(blocks))
        missing_flists = set(await _missing(hub, "flists", list(encoded)))
        progress(f"{len(encoded)} flist(s), {len(blocks)} block(s); hub lacks "
                 f"{len(missing_blocks)} block(s) and {len(missing_flists)} flist(s)")
        await _push_blocks(hub, store, missing_blocks, parallel, report, progress)
        sender = _Sender(hub, store, encoded, parallel, report, progress)
        for fid in encoded:
            if fid in missing_flists:
                await sender.flist(fid)
        for name, fid in sorted(tags.items()):
            have = await hub.call("GET", "/" + paths.tag_path(name))
            if have.status == 200 and have.body == f"{fid}\n".encode():
                continue
            await sender.again_if_lost(paths.tag_path(name), f"{fid}\n".encode(), [fid])
            report.tags_sent += 1
            progress(f"tag {name} -> {fid[:16]}…")
        if manifest is not None:
            try:
                m = stored_manifest(manifest)
            except ZosError as exc:
                raise PushError(f"manifest does not decode: {exc}") from None
            await sender.again_if_lost(layout.manifest_path(m.channel), manifest,
                                       [p.id for p in m.flists])
            report.manifest = f"{m.channel} v{m.version}"
            progress(f"manifest {m.channel} v{m.version} published")
    finally:
        await hub.aclose()
    return report


def _all_flists(store_path: str) -> list[str]:
    folder = os.path.join(store_path, layout.FLISTS)
    try:
        return sorted(n for n in os.listdir(folder) if layout.is_hex_id(n))
    except FileNotFoundError:
        raise PushError(f"{store_path} has no flists/ folder") from None


def _all_tags(store_path: str) -> list[str]:
    try:
        names = os.listdir(os.path.join(store_path, paths.TAGS))
    except FileNotFoundError:
        return []
    return [name for name in sorted(names) if paths.is_tag(name)]


async def _missing(hub: _Hub, kind: str, ids: list[str]) -> list[str]:
    out: list[str] = []
    for i in range(0, len(ids), MISSING_BATCH):
        body = json.dumps({kind: ids[i:i + MISSING_BATCH]}).encode()
        reply = await hub.call("POST", "/api/v1/missing", body)
        if reply.status != 200:
            raise PushError(f"hub refused the missing-objects query: HTTP {reply.status}")
        out += json.loads(reply.body)[kind]
    return out


async def _push_root(hub: _Hub, data: bytes, report: PushReport, progress: Progress) -> None:
    try:
        version = decode_body(envelope.decode(data, max_size=MAX_ROOT_BYTES, kind="root")
                              .body).version
    except ZosError as exc:
        raise PushError(f"root does not decode: {exc}") from None
    have = await hub.call("GET", "/" + layout.root_path(version))
    if have.status == 200:
        if have.body != data:
            raise PushError(f"hub already has a different root {version}")
        return
    await hub.put(layout.root_path(version), data)
    report.roots_sent += 1
    progress(f"root {version} published")


class _Sender:
    """Flists, tags and the manifest, each sent again once if the hub lost, between
    our missing-objects query and the publication, an old object it reuses (a
    `hub gc` deleted it: the hub then refuses with missing-blocks/-flists)."""

    def __init__(self, hub: _Hub, store: LocalStore, encoded: dict[str, bytes], parallel: int,
                 report: PushReport, progress: Progress) -> None:
        self.hub, self.store, self.encoded = hub, store, encoded
        self.parallel, self.report, self.progress = parallel, report, progress

    async def flist(self, fid: str) -> None:
        data = self.encoded.get(fid)
        if data is None:
            try:
                data = self.store.resolve(fid)
            except ZosError as exc:
                raise PushError(f"the hub lacks flist {fid}, not in the local store either: "
                                f"{exc}") from None
        key = layout.flist_path(fid)
        try:
            await self.hub.put(key, data)
        except PushRefused as exc:
            if exc.reason != "missing-blocks":
                raise
            lost = await _missing(self.hub, "blocks", list(dict.fromkeys(flist_block_ids(data))))
            self.progress(f"the hub lost {len(lost)} block(s) of flist {fid[:16]}… since we "
                          f"asked (hub gc?): sending them, then the flist again")
            await _push_blocks(self.hub, self.store, lost, self.parallel, self.report,
                               self.progress)
            await self.hub.put(key, data)
        self.report.flists_sent += 1
        self.progress(f"flist {fid[:16]}… sent")

    async def again_if_lost(self, key: str, body: bytes, flists: list[str]) -> None:
        """PUT a tag or manifest naming `flists`; once more after re-sending lost ones."""
        try:
            await self.hub.put(key, body)
        except PushRefused as exc:
            if exc.reason != "missing-flists":
                raise
            lost = await _missing(self.hub, "flists", list(dict.fromkeys(flists)))
            self.progress(f"the hub lost {len(lost)} flist(s) for {key} since we asked "
                          f"(hub gc?): sending them, then {key} again")
            for fid in lost:
                await self.flist(fid)
            await self.hub.put(key, body)


def _size(store: LocalStore, bid: str) -> int:
    try:
        return store.block_path(bid).stat().st_size
    except OSError:
        return 0  # get_block says what is wrong with it, when it is sent


async def _push_blocks(hub: _Hub, store: LocalStore, ids: list[str], parallel: int,
                       report: PushReport, progress: Progress) -> None:
    queue = iter(ids)
    last = [0.0]
    meter = hub.meter
    if meter is not None:
        meter.phase("push", len(ids), sum(_size(store, bid) for bid in ids))

    async def worker() -> None:
        for bid in queue:
            data = store.get_block(bid)
            await hub.put(layout.block_path(bid), data)
            report.blocks_sent += 1
            report.bytes_sent += len(data)
            if meter is not None:
                meter.add(1, len(data))
                continue
            now = trio.current_time()
            if now - last[0] >= 1.0 or report.blocks_sent == len(ids):
                last[0] = now
                progress(f"blocks {report.blocks_sent}/{len(ids)} "
                         f"({report.bytes_sent / 1048576:.1f} MiB)")

    async with trio.open_nursery() as nursery:
        for _ in range(max(1, min(parallel, len(ids)))):
            nursery.start_soon(worker)
