"""The hubs, as the boot sequence sees them: manifests, roots, flists and heartbeats over HTTP."""

import contextlib
from collections.abc import Sequence
from pathlib import Path

import trio

from zosnode.agent.boot.errors import BootError, HubsUnreachable
from zosnode.atomicfile import write_atomic
from zosnode.fetch.errors import CircuitOpen
from zosnode.fetch.fetcher import Fetcher
from zosnode.fetch.health import Circuit
from zosnode.http.client import HttpStatusError
from zosnode.http.errors import HttpError
from zosnode.layout import LayoutError, manifest_path, object_id, root_path
from zosnode.trust.manifest import MAX_MANIFEST_BYTES, FlistPin, Manifest
from zosnode.trust.root import MAX_ROOT_BYTES


class HubClient:
    """Hubs (the command line's, then the manifest's) from the last to answer, then mirrors (maybe
    stale; never for heartbeats); manifest polls conditional (304). Each GET passes a per-source
    breaker: a stalling hub costs one fault detection, and stays demoted if a manifest names it."""

    def __init__(self, hubs: Sequence[str], channel: str, *, fetcher: Fetcher,
                 flist_dir: Path | None = None) -> None:
        self.hubs = list(dict.fromkeys(h.rstrip("/") for h in hubs))
        self._base = list(self.hubs)  # the command line's: always kept, always first
        self.mirrors: list[str] = []
        try:
            self._manifest_path = manifest_path(channel)
        except LayoutError:
            # The command line allows names no hub serves (upper case).
            raise BootError(f"channel {channel!r}: no hub serves it (want 1-64 of "
                            "a-z 0-9 . _ -)") from None
        self.fetcher = fetcher
        self.fetcher.set_mirrors(self.sources)
        self._etags: dict[str, str] = {}
        self._good = 0  # index of the hub that answered last
        self.requests = 0
        self.flist_dir = flist_dir  # a cache disk's flists/, kept across reboots, checked

    @property
    def sources(self) -> list[str]:
        return self.hubs + self.mirrors

    def adopt(self, manifest: Manifest) -> None:
        """Also use the hubs and mirrors the running release's signed manifest names."""
        hubs = list(dict.fromkeys([*self._base, *(h.rstrip("/") for h in manifest.hubs)]))
        mirrors = [m.rstrip("/") for m in manifest.mirrors if m.rstrip("/") not in hubs]
        if (hubs, mirrors) != (self.hubs, self.mirrors):
            self.hubs, self.mirrors = hubs, list(dict.fromkeys(mirrors))
            self.fetcher.set_mirrors(self.sources)

    def _order(self, *, mirrors: bool = True) -> list[str]:
        """Hubs from the one that answered last, then mirrors; closed circuits first in each."""
        now = trio.current_time()

        def shut(source: str) -> tuple[bool, float]:
            breaker = self.fetcher.health.breaker(source)
            return breaker.state is not Circuit.CLOSED, breaker.ready_at(now)

        good = self._good % len(self.hubs)
        hubs = sorted(self.hubs[good:] + self.hubs[:good], key=shut)
        return hubs + sorted(self.mirrors, key=shut) if mirrors else hubs

    async def _get(self, path: str, max_size: int, *, conditional: bool) -> bytes | None:
        errors: list[str] = []
        order = self._order()
        before = self.requests
        # 404 answers "no such root"; 304 "manifest unchanged".
        ok = (200, 304) if conditional else (200, 404)
        # Every circuit open, nobody asked: the first gets its trial now (callers pace retries).
        for source, early in [*((s, False) for s in order), (order[0], True)]:
            if early and self.requests != before:
                break
            etag = self._etags.get(source) if conditional else None
            try:
                resp = await self.fetcher.ask(
                    source, path, max_size=max_size, ok=ok, early=early,
                    headers={"If-None-Match": etag} if etag else {})
            except CircuitOpen:
                if not early:
                    errors.append(f"{source}: not asked (circuit open)")
                continue
            except HttpError as exc:
                self.requests += 1
                why = f"HTTP {exc.status}" if isinstance(exc, HttpStatusError) else str(exc)
                errors.append(f"{source}: {why}")
                continue
            self.requests += 1
            if source in self.hubs:
                self._good = self.hubs.index(source)
            if resp.status in (304, 404):
                return None
            if conditional and (etag := resp.headers.get("etag")):
                self._etags[source] = etag
            return resp.body
        raise HubsUnreachable(f"no hub served {path}: " + "; ".join(errors))

    async def manifest(self) -> bytes | None:
        """None if unchanged since the last answer."""
        return await self._get(self._manifest_path, MAX_MANIFEST_BYTES, conditional=True)

    async def root(self, version: int) -> bytes | None:
        """Signed root `version`, or None when the hubs have none (404)."""
        try:
            path = root_path(version)
        except LayoutError:
            return None  # past any version a root may have: there is none
        return await self._get(path, MAX_ROOT_BYTES, conditional=False)

    async def flist(self, pin: FlistPin) -> bytes:
        kept = self.flist_dir / pin.id if self.flist_dir is not None else None
        if kept is not None:
            with contextlib.suppress(OSError), kept.open("rb") as f:
                data = f.read(pin.size + 1)
                if object_id(data) == pin.id:
                    return data
        data = await self.fetcher.fetch_flist(pin.id, max_size=pin.size)
        if kept is not None:
            with contextlib.suppress(OSError):  # a full or failing disk: fetched again next boot
                kept.parent.mkdir(parents=True, exist_ok=True)
                for old in sorted(kept.parent.iterdir(), key=lambda p: p.stat().st_mtime)[:-63]:
                    old.unlink()  # the newest 64 only: a bounded cost on the disk
                write_atomic(kept, data, mode=0o600)
        return data

    async def heartbeat(self, data: bytes) -> None:
        errors = []
        for hub in self._order(mirrors=False):
            try:
                await self.fetcher.client.post(f"{hub}/api/v1/heartbeat", data, max_size=64 * 1024,
                                               headers={"Content-Type": "application/cbor"})
                return
            except HttpError as exc:
                errors.append(str(exc))
        raise HubsUnreachable("heartbeat not accepted: " + "; ".join(errors))
