"""`hub mirror`: copy to a static mirror directory or a second bucket what it lacks.

Resumable: what to copy is decided from a listing of the target, so a run
that was interrupted and is run again copies only the rest (content-addressed
and versioned objects are never rewritten; a tag, a channel manifest or a
boot file is rewritten when its bytes differ).

Verified: every object is checked before it is written (a block or an flist
must hash to its id, an flist must decode, a root or manifest must be a
signed envelope of its kind); a bad one is not copied and is reported. Each
object is written whole (`zosnode.atomicfile` in a directory, one PUT in a
bucket).

Ordered so that the mirror never points at what it lacks: blocks, then flists
(only those whose blocks are all on the mirror), then roots, release records
and tags, then boot files, then the channel manifests last (only those whose
flists are all on the mirror).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import trio

from zosnode import layout
from zosnode.flist import format as flist_format
from zosnode.flist.errors import FlistError
from zosnode.hub import inventory
from zosnode.hub.inventory import Listed
from zosnode.hub.objects import ObjectKind, ObjectPath, parse_path
from zosnode.hub.publish import stored_manifest
from zosnode.hub.storage import Storage
from zosnode.progress import Progress
from zosnode.trust import envelope
from zosnode.trust.errors import TrustError
from zosnode.trust.root import MAX_ROOT_BYTES

K = ObjectKind
ORDER = (K.BLOCK, K.FLIST, K.ROOT, K.RELEASE, K.TAG, K.BOOT, K.MANIFEST)


@dataclass
class MirrorReport:
    dry_run: bool = False
    objects: int = 0
    copied: int = 0
    bytes_copied: int = 0
    present: int = 0
    refused: list[str] = field(default_factory=list)
    seconds: float = 0.0


def refusal(parsed: ObjectPath, data: bytes) -> str | None:
    """Why `data` must not be copied to `parsed.path`, or None (pure)."""
    kind = parsed.kind
    if kind in (K.BLOCK, K.FLIST):
        got = layout.object_id(data)
        if got != parsed.object_id:
            return f"hashes to {got}, not to its id"
        if kind is K.FLIST:
            try:
                flist_format.decode(data)
            except FlistError as exc:
                return f"does not decode: {exc}"
    elif kind is K.ROOT:
        try:
            envelope.decode(data, max_size=MAX_ROOT_BYTES, kind="root")
        except TrustError as exc:
            return f"not a root envelope: {exc}"
    elif kind in (K.RELEASE, K.MANIFEST):
        try:
            stored_manifest(data)
        except TrustError as exc:
            return f"not a manifest: {exc}"
    elif kind is K.TAG and (len(data) != 65 or not layout.is_hex_id(data[:64].decode(
            "ascii", "replace"))):
        return "not an flist id and a newline"
    return None


def _needs(parsed: ObjectPath, data: bytes) -> list[str]:
    """The keys that must be on the mirror before this object may be (pure)."""
    if parsed.kind is K.FLIST:
        return [layout.block_path(b) for b in flist_format.decode(data).blocks()]
    if parsed.kind in (K.RELEASE, K.MANIFEST):
        return [layout.flist_path(p.id) for p in stored_manifest(data).flists]
    if parsed.kind is K.TAG:
        return [layout.flist_path(data[:64].decode())]
    return []


async def mirror(source: Storage, target: Storage, *, dry_run: bool = False,
                 parallel: int = 8, progress: Progress | None = None) -> MirrorReport:
    meter = progress or Progress()
    started = time.monotonic()
    report = MirrorReport(dry_run=dry_run)
    meter.phase("list", 0, 0)
    if not dry_run:
        await target.prepare()
    wanted = await inventory.walk(source)
    have = {o.key: o for o in await inventory.walk(target)}
    report.objects = len(wanted)
    on_target = set(have)
    groups: dict[ObjectKind, list[tuple[Listed, ObjectPath]]] = {
        k: [] for k in ORDER}
    for obj in wanted:
        parsed = parse_path(obj.key)
        if parsed is None:
            report.refused.append(f"{obj.key}: not an object of the layout")
            continue
        if parsed.kind.immutable and obj.key in have:
            report.present += 1
            continue
        groups[parsed.kind].append((obj, parsed))
    todo = [item for k in ORDER for item in groups[k]]
    meter.phase("copy", len(todo), sum(o.size for o, _ in todo))

    async def copy(obj: Listed, parsed: ObjectPath) -> None:
        data = await inventory.read(source, obj.key)
        if data is None:
            report.refused.append(f"{obj.key}: vanished from the source")
            return
        why = refusal(parsed, data)
        if why is None:
            lacking = [k for k in _needs(parsed, data) if k not in on_target]
            if lacking:
                why = f"not copied: the mirror lacks {len(lacking)} object(s) it needs, " \
                      f"first {lacking[0]}"
        if why is not None:
            report.refused.append(f"{obj.key}: {why}")
            meter.add(1, obj.size)
            return
        if not parsed.kind.immutable and obj.key in have and \
                have[obj.key].size == len(data) and \
                await inventory.read(target, obj.key) == data:
            report.present += 1
            meter.add(1, obj.size)
            return
        if not dry_run:
            await inventory.write(target, obj.key, data)
        on_target.add(obj.key)
        report.copied += 1
        report.bytes_copied += len(data)
        meter.add(1, len(data))

    for kind in ORDER:
        items: Iterator[tuple[Listed, ObjectPath]] = iter(groups[kind])

        async def worker(items: Iterator[tuple[Listed, ObjectPath]] = items) -> None:
            for obj, parsed in items:
                await copy(obj, parsed)

        # Content-addressed objects in parallel; each kind finishes before the next.
        width = max(1, parallel) if kind in (K.BLOCK, K.FLIST) else 1
        async with trio.open_nursery() as nursery:
            for _ in range(width):
                nursery.start_soon(worker)
    report.seconds = time.monotonic() - started
    return report
