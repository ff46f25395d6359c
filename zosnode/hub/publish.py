"""What the hub accepts for publication, and why it refuses the rest.

Every check runs on the complete body before anything is written, and each
object is then written with one atomic put, so a refused or interrupted
upload leaves nothing visible. The rules:

- a tag (tags/<name>: an flist id and a newline) must name an flist here;
- a block or an flist must hash (BLAKE2b-256) to the id in its path;
- an flist must decode, and every block it references must already be here
  (publishers push blocks first), so a node never meets a dangling id;
- a root N must be N = current + 1 and chain from the current root (a
  threshold of the old keys and of its own), or be a self-signed root 1 on a
  hub that has none yet;
- a channel manifest must verify against the current root (threshold,
  schema, channel, expiry), be newer than the channel's current manifest, and
  pin only flists present here. It is stored as the channel's manifest and
  as releases/<version>.manifest.

The presence checks and the writes of flists, tags and manifests (and of
roots) run under the shared publish lock, which `hub gc` also holds around
each batch of deletes (`zosnode.hub.gc`): gc never deletes an object between
such a check and its write.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import trio

from zosnode import layout
from zosnode.flist import format as flist_format
from zosnode.flist.errors import FlistError
from zosnode.http.messages import Body
from zosnode.hub import paths
from zosnode.hub.objects import ObjectKind, ObjectPath, parse_path
from zosnode.hub.storage import Storage, StorageError
from zosnode.trust import envelope
from zosnode.trust.anchor import verify_self_signed
from zosnode.trust.errors import TrustError
from zosnode.trust.manifest import MAX_MANIFEST_BYTES, Manifest
from zosnode.trust.manifest import decode_body as decode_manifest_body
from zosnode.trust.root import MAX_ROOT_BYTES, Root
from zosnode.trust.signing import make_anchor
from zosnode.trust.verifier import Verifier
from zosnode.wire.errors import WireError


class PublishRefused(WireError):
    """The publication breaks a rule; `reason` is a short metrics label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def check_content_id(obj: ObjectPath, body: bytes) -> None:
    want = obj.object_id
    got = layout.object_id(body)
    if want is not None and got != want:
        raise PublishRefused("hash-mismatch", f"body hashes to {got}, not to {want}")


def parse_tag(body: bytes) -> str:
    """The flist id in a tag file: 64 hex digits and a newline (the store's format)."""
    text = body.decode("ascii", errors="replace")
    if len(body) != 65 or not text.endswith("\n") or not layout.is_hex_id(text[:64]):
        raise PublishRefused("bad-tag", "a tag is 64 lowercase hex digits and a newline")
    return text[:64]


def flist_block_ids(body: bytes) -> list[str]:
    try:
        return list(flist_format.decode(body).blocks())
    except FlistError as exc:
        raise PublishRefused("bad-flist", f"not a valid flist: {exc}") from None


def stored_manifest(data: bytes) -> Manifest:
    """Decode a manifest this hub already accepted (it was verified then)."""
    env = envelope.decode(data, max_size=MAX_MANIFEST_BYTES, kind="manifest")
    return decode_manifest_body(env.body)


PRESENCE_PARALLEL = 8


def _first(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


@asynccontextmanager
async def _no_lock() -> AsyncIterator[None]:
    yield


class Publisher:
    """The hub's write side; holds the trust state the checks need."""

    def __init__(self, storage: Storage, *,
                 lock: Callable[[], AbstractAsyncContextManager[None]] = _no_lock) -> None:
        self.storage = storage
        self.verifier: Verifier | None = None
        # Roots and manifests are check-then-write: serialise them so two
        # concurrent publications cannot both pass "newer" and land in the
        # wrong order. `lock` serialises them across every hub replica on
        # the store (the registry database's publish lock); the trio lock,
        # within this process. Flists and tags take `lock` too, around their
        # presence check and write: `hub gc` deletes under it.
        self._shared_lock = lock
        self._trust_lock = trio.Lock()

    async def load_roots(self) -> Root | None:
        """Trust the stored root chain: root 1 (self-signed) and each successor."""
        first = await self.storage.get(layout.root_path(1))
        if first is None:
            return None
        data = await _read(first.body)
        self.verifier = Verifier(make_anchor(data, floor=0, build_time=0))
        refresh = self.verifier.refresh()
        while (version := refresh.wanted()) is not None:
            obj = await self.storage.get(layout.root_path(version))
            if obj is None:
                break
            refresh.received(await _read(obj.body))
        return self.verifier.root

    async def put(self, key: str, body: bytes, now: int) -> list[str]:
        """Check and store a publication; return the keys written."""
        obj = parse_path(key)
        if obj is None:
            raise PublishRefused("bad-path", f"{key} cannot be published")
        kind = obj.kind
        if kind in (ObjectKind.BLOCK, ObjectKind.FLIST):
            check_content_id(obj, body)
            if kind is ObjectKind.BLOCK:
                # No lock: a block is content-addressed and young, and gc
                # never deletes a block younger than its grace period.
                await self.storage.put(obj.path, body)
                return [obj.path]
            blocks = flist_block_ids(body)
            # Check and write under the publish lock `hub gc` deletes under:
            # a block gc deletes is gone before this check, or seen by gc's
            # re-read (under the lock) once this flist is stored.
            async with self._shared_lock():
                missing = await self.missing([layout.block_path(b) for b in blocks])
                if missing:
                    raise PublishRefused(
                        "missing-blocks",
                        f"flist references {len(missing)} block(s) not on this hub, "
                        f"first {missing[0].rsplit('/', 1)[-1]}")
                await self.storage.put(obj.path, body)
            return [obj.path]
        if kind is ObjectKind.TAG:
            fid = parse_tag(body)
            async with self._shared_lock():  # as for an flist: gc deletes flists under it
                if not await self.storage.exists(layout.flist_path(fid)):
                    raise PublishRefused("missing-flists",
                                         f"tag names flist {fid}, not on this hub")
                await self.storage.put(obj.path, body)
            return [obj.path]
        if kind is ObjectKind.ROOT:
            async with self._trust_lock, self._shared_lock():
                await self.load_roots()  # another replica may have published one
                return [await self._put_root(obj, body)]
        if kind is ObjectKind.MANIFEST:
            async with self._trust_lock, self._shared_lock():
                await self.load_roots()
                return await self._put_manifest(obj, body, now)
        raise PublishRefused("bad-path", f"{key} cannot be published")

    async def missing(self, wanted: list[str]) -> list[str]:
        """The keys of `wanted` not stored, in order. Asked PRESENCE_PARALLEL at a
        time: this runs under the publish lock, and on S3 each is a HEAD."""
        present = [True] * len(wanted)
        todo = iter(range(len(wanted)))

        async def worker() -> None:
            for i in todo:
                present[i] = await self.storage.exists(wanted[i])

        try:
            async with trio.open_nursery() as nursery:
                for _ in range(min(PRESENCE_PARALLEL, len(wanted))):
                    nursery.start_soon(worker)
        except BaseExceptionGroup as group:
            # The store failed: the one StorageError the caller maps to 503.
            failed = group.subgroup(lambda e: isinstance(e, StorageError))
            if failed is None:
                raise
            raise _first(failed) from None
        return [k for k, ok in zip(wanted, present, strict=True) if not ok]

    async def _put_root(self, obj: ObjectPath, body: bytes) -> str:
        if len(body) > MAX_ROOT_BYTES:
            raise PublishRefused("oversize", f"root over {MAX_ROOT_BYTES} bytes")
        key = obj.path
        assert obj.version is not None  # a root's path has one
        version = obj.version
        try:
            if self.verifier is None:
                if version != 1:
                    raise PublishRefused("root-gap", "this hub has no root yet: publish root 1")
                verify_self_signed(body)
                await self.storage.put(key, body)
                self.verifier = Verifier(make_anchor(body, floor=0, build_time=0))
                return key
            current = self.verifier.root.version
            if version != current + 1:
                raise PublishRefused("root-gap",
                                     f"root {version} does not follow the current root {current}")
            # Check on a scratch verifier so a refused root changes nothing.
            trial = Verifier(make_anchor(self.verifier.root_bytes, 0, 0))
            trial.accept_root(body)
        except TrustError as exc:
            raise PublishRefused("bad-root", f"root {version} refused: {exc}") from None
        await self.storage.put(key, body)
        self.verifier.accept_root(body)
        return key

    async def _put_manifest(self, obj: ObjectPath, body: bytes, now: int) -> list[str]:
        key = obj.path
        assert obj.channel is not None  # a manifest's path has one
        channel = obj.channel
        if self.verifier is None:
            raise PublishRefused("no-root", "this hub has no root: publish roots first")
        current = await self.storage.get(key)
        trial = Verifier(make_anchor(self.verifier.root_bytes, 0, 0))
        try:
            verified = trial.verify_manifest(body, channel=channel, now=now)
        except TrustError as exc:
            raise PublishRefused("bad-manifest", f"manifest refused: {exc}") from None
        manifest = verified.manifest
        if current is not None:
            try:
                old = stored_manifest(await _read(current.body))
            except TrustError as exc:
                raise PublishRefused("bad-stored", f"stored manifest unreadable: {exc}") from None
            if manifest.version <= old.version:
                raise PublishRefused(
                    "not-newer",
                    f"manifest v{manifest.version} is not newer than v{old.version} on {channel}")
        missing = await self.missing([layout.flist_path(p.id) for p in manifest.flists])
        if missing:
            raise PublishRefused("missing-flists",
                                 f"manifest pins {len(missing)} flist(s) not on this hub")
        release = paths.release_path(channel, manifest.version)
        # The release record first: the channel pointer never names a version
        # whose record is missing.
        await self.storage.put(release, body)
        await self.storage.put(key, body)
        return [release, key]


async def _read(body: Body) -> bytes:
    if isinstance(body, bytes):
        return body
    with open(body.path, "rb") as f:
        f.seek(body.offset)
        return f.read(body.length)
