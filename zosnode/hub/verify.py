"""`hub verify`: re-hash and re-check every stored object; name what is wrong.

What is checked, per object:

- a block: BLAKE2b-256 of its stored bytes is the id in its key;
- an flist: likewise, it decodes, and every block it references is stored;
- roots: `roots/1.root` is self-signed to its threshold and each next root
  chains from the one before (`Verifier.accept_root`), no gaps;
- a release record or a channel manifest: it decodes, a threshold of one of
  the stored roots' keys signed it (a release may predate a rotation), its
  channel and version are those of its key, and every flist it pins is
  stored; the channel's manifest is byte for byte the release record of its
  version. An expired manifest is not an error (old releases expire);
- a tag: an flist id and a newline, naming a stored flist;
- anything else under the layout's folders: not an object of the layout.

Boot files are not checked (the operator places them; nothing signs them).
Each problem is one `Problem`; none means the store is sound.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import trio

from zosnode import layout
from zosnode.flist import format as flist_format
from zosnode.flist.errors import FlistError
from zosnode.hub import inventory, paths
from zosnode.hub.inventory import Listed
from zosnode.hub.objects import ObjectKind, ObjectPath, parse_path
from zosnode.hub.storage import Storage
from zosnode.progress import Progress
from zosnode.trust import envelope
from zosnode.trust.anchor import verify_self_signed
from zosnode.trust.errors import TrustError
from zosnode.trust.manifest import MAX_MANIFEST_BYTES, Manifest
from zosnode.trust.manifest import decode_body as decode_manifest_body
from zosnode.trust.root import Root
from zosnode.trust.signing import make_anchor
from zosnode.trust.verifier import Verifier


@dataclass(frozen=True)
class Problem:
    key: str
    what: str

    def line(self) -> str:
        return f"{self.key}: {self.what}"


@dataclass
class StoreVerifyReport:
    objects: int = 0
    bytes: int = 0
    problems: list[Problem] = field(default_factory=list)
    expired_manifests: int = 0
    seconds: float = 0.0


def check_content(key: str, oid: str, data: bytes) -> str | None:
    got = layout.object_id(data)
    return None if got == oid else f"hashes to {got}, not to its id"


def check_root_chain(roots: dict[int, bytes]) -> tuple[list[Root], list[Problem]]:
    """The roots that chain from a self-signed root 1, and what breaks the chain (pure)."""
    problems: list[Problem] = []
    chain: list[Root] = []
    if not roots:
        return chain, problems
    if 1 not in roots:
        return chain, [Problem(layout.root_path(min(roots)), "no roots/1.root to chain from")]
    try:
        chain.append(verify_self_signed(roots[1]))
        verifier = Verifier(make_anchor(roots[1], floor=0, build_time=0))
    except TrustError as exc:
        return chain, [Problem(layout.root_path(1), f"not a self-signed root: {exc}")]
    version = 2
    while version in roots:
        try:
            chain.append(verifier.accept_root(roots[version]))
        except TrustError as exc:
            problems.append(Problem(layout.root_path(version), f"does not chain: {exc}"))
            break
        version += 1
    later = sorted(v for v in roots if v > version)
    if later and not problems:
        problems.append(Problem(layout.root_path(later[0]), f"gap: no root {version}"))
    return chain, problems


def check_manifest(key: str, data: bytes, roots: list[Root], channel: str,
                   version: int | None) -> tuple[Manifest | None, str | None]:
    """The manifest if a stored root's threshold signed it and its key matches (pure)."""
    try:
        env = envelope.decode(data, max_size=MAX_MANIFEST_BYTES, kind="manifest")
    except TrustError as exc:
        return None, f"not a manifest envelope: {exc}"
    last: TrustError | None = None
    for root in reversed(roots):
        try:
            envelope.require_threshold(env, root.keys, root.threshold, f"root v{root.version}")
            break
        except TrustError as exc:
            last = exc
    else:
        return None, (f"no stored root's threshold signed it: {last}" if roots
                      else "no root is stored to check its signatures")
    try:
        manifest = decode_manifest_body(env.body)
    except TrustError as exc:
        return None, f"body does not decode: {exc}"
    if manifest.channel != channel:
        return manifest, f"is for channel {manifest.channel!r}"
    if version is not None and manifest.version != version:
        return manifest, f"holds version {manifest.version}"
    return manifest, None


async def verify(storage: Storage, *, progress: Progress | None = None,
                 now: float | None = None, parallel: int = 8) -> StoreVerifyReport:
    meter = progress or Progress()
    started = time.monotonic()
    clock = time.time() if now is None else now
    report = StoreVerifyReport()
    meter.phase("list", 0, 0)
    objects = await inventory.walk(storage)
    report.objects = len(objects)
    report.bytes = sum(o.size for o in objects)
    bad = report.problems.append
    by_kind: dict[ObjectKind, list[tuple[Listed, ObjectPath]]] = {
        k: [] for k in ObjectKind}
    for obj in objects:
        parsed = parse_path(obj.key)
        if parsed is None:
            bad(Problem(obj.key, "not an object of the layout"))
            continue
        by_kind[parsed.kind].append((obj, parsed))
    blocks = {p.object_id for _, p in by_kind[ObjectKind.BLOCK]}
    flists = {p.object_id for _, p in by_kind[ObjectKind.FLIST]}
    meter.phase("check", len(objects), report.bytes)

    async def body(obj: Listed) -> bytes | None:
        data = await inventory.read(storage, obj.key)
        meter.add(1, obj.size)
        if data is None:
            bad(Problem(obj.key, "vanished while being checked"))
        return data

    queue = iter(by_kind[ObjectKind.BLOCK])

    async def check_blocks() -> None:
        for obj, parsed in queue:
            data = await body(obj)
            if data is not None and parsed.object_id is not None:
                if (what := check_content(obj.key, parsed.object_id, data)) is not None:
                    bad(Problem(obj.key, what))

    # Blocks are most of a store: several reads at once (a bucket answers each
    # GET in a round trip; a directory's reads are synchronous anyway).
    async with trio.open_nursery() as nursery:
        for _ in range(max(1, parallel)):
            nursery.start_soon(check_blocks)
    report.problems.sort(key=lambda p: p.key)
    for obj, parsed in by_kind[ObjectKind.FLIST]:
        data = await body(obj)
        if data is None or parsed.object_id is None:
            continue
        if (what := check_content(obj.key, parsed.object_id, data)) is not None:
            bad(Problem(obj.key, what))
            continue
        try:
            refs = flist_format.decode(data).blocks()
        except FlistError as exc:
            bad(Problem(obj.key, f"does not decode: {exc}"))
            continue
        missing = [b for b in refs if b not in blocks]
        if missing:
            bad(Problem(obj.key, f"references {len(missing)} block(s) not stored, "
                                 f"first {missing[0]}"))
    roots: dict[int, bytes] = {}
    for obj, parsed in by_kind[ObjectKind.ROOT]:
        data = await body(obj)
        if data is not None and parsed.version is not None:
            roots[parsed.version] = data
    chain, root_problems = check_root_chain(roots)
    report.problems += root_problems
    releases: dict[str, bytes] = {}
    for kind in (ObjectKind.RELEASE, ObjectKind.MANIFEST):
        for obj, parsed in by_kind[kind]:
            data = await body(obj)
            if data is None or parsed.channel is None:
                continue
            manifest, what = check_manifest(obj.key, data, chain, parsed.channel,
                                            parsed.version)
            if what is not None:
                bad(Problem(obj.key, what))
            if manifest is None:
                continue
            if manifest.expires_at <= clock:
                report.expired_manifests += 1
            missing_f = [p.id for p in manifest.flists if p.id not in flists]
            if missing_f:
                bad(Problem(obj.key, f"pins {len(missing_f)} flist(s) not stored, "
                                     f"first {missing_f[0]}"))
            if kind is ObjectKind.RELEASE:
                releases[obj.key] = data
            else:
                record = paths.release_path(parsed.channel, manifest.version)
                if releases.get(record) != data:
                    bad(Problem(obj.key, f"differs from {record} (or it is missing)"))
    for obj, _parsed in by_kind[ObjectKind.TAG]:
        data = await body(obj)
        if data is None:
            continue
        text = data.decode("ascii", "replace")
        if len(data) != 65 or not text.endswith("\n") or not layout.is_hex_id(text[:64]):
            bad(Problem(obj.key, "not an flist id and a newline"))
        elif text[:64] not in flists:
            bad(Problem(obj.key, f"names flist {text[:64]}, not stored"))
    for obj, _ in by_kind[ObjectKind.BOOT]:
        meter.add(1, obj.size)
    report.seconds = time.monotonic() - started
    return report
