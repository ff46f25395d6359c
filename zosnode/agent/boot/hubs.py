"""The hubs, as the boot sequence sees them: a protocol and its HTTP implementation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import trio

from zosnode.agent.boot.errors import BootError, HubsUnreachable
from zosnode.fetch.fetcher import Fetcher
from zosnode.http.client import HttpClient, HttpError, HttpStatusError, Timeouts
from zosnode.hub.httpreq import HttpConnection, RequestError
from zosnode.hub.httpreq import Origin as PostOrigin
from zosnode.trust.manifest import MAX_MANIFEST_BYTES, FlistPin
from zosnode.trust.root import MAX_ROOT_BYTES


class Hubs(Protocol):
    async def manifest(self) -> bytes | None:
        """The channel's manifest; None if unchanged since the last answer."""

    async def root(self, version: int) -> bytes | None:
        """Signed root `version`, or None when the hubs have none (404)."""

    async def flist(self, pin: FlistPin) -> bytes:
        """The flist bytes `pin` names, hash-checked against `pin.id`."""

    async def heartbeat(self, data: bytes) -> None:
        """Deliver a signed heartbeat to a hub."""


# -- real I/O: hubs over HTTP ---------------------------------------------------------


class HubClient:
    """The hubs of the kernel command line (then the manifest's), tried in turn.

    Manifest polls are conditional (If-None-Match with the hub's ETag): an
    unchanged manifest costs a 304 and no body. Flists and blocks come through
    the `Fetcher`, which trusts only hashes.
    """

    def __init__(
        self,
        hubs: Sequence[str],
        channel: str,
        *,
        fetcher: Fetcher,
        client: HttpClient | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        if not hubs:
            raise BootError("no hub configured")
        self.hubs = [h.rstrip("/") for h in hubs]
        self.channel = channel
        self.fetcher = fetcher
        self.client = client or HttpClient(
            timeouts=Timeouts(connect=timeout_s, head=timeout_s, body_idle=timeout_s)
        )
        self.timeout_s = timeout_s
        self._etags: dict[str, str] = {}
        self._good = 0  # index of the hub that answered last
        self.requests = 0

    def _order(self) -> list[str]:
        return self.hubs[self._good:] + self.hubs[: self._good]

    async def _get(self, path: str, max_size: int, *, conditional: bool) -> bytes | None:
        errors = []
        for hub in self._order():
            headers = {}
            if conditional and hub in self._etags:
                headers["If-None-Match"] = self._etags[hub]
            self.requests += 1
            try:
                with trio.fail_after(self.timeout_s * 3):
                    resp = await self.client.get(f"{hub}/{path}", max_size=max_size,
                                                 headers=headers)
            except HttpStatusError as exc:
                if exc.status == 304:
                    self._good = self.hubs.index(hub)
                    return None
                if exc.status == 404 and not conditional:
                    self._good = self.hubs.index(hub)
                    return None
                errors.append(f"{hub}: HTTP {exc.status}")
                continue
            except (HttpError, trio.TooSlowError) as exc:
                errors.append(f"{hub}: {exc or type(exc).__name__}")
                continue
            self._good = self.hubs.index(hub)
            etag = resp.headers.get("etag")
            if conditional and etag:
                self._etags[hub] = etag
            return resp.body
        raise HubsUnreachable(f"no hub served {path}: " + "; ".join(errors))

    async def manifest(self) -> bytes | None:
        return await self._get(f"channels/{self.channel}/manifest", MAX_MANIFEST_BYTES,
                               conditional=True)

    async def root(self, version: int) -> bytes | None:
        return await self._get(f"roots/{version}.root", MAX_ROOT_BYTES, conditional=False)

    async def flist(self, pin: FlistPin) -> bytes:
        return await self.fetcher.fetch_flist(pin.id, max_size=pin.size)

    async def heartbeat(self, data: bytes) -> None:
        errors = []
        for hub in self._order():
            origin, _ = PostOrigin.from_url(hub)
            conn = HttpConnection(origin, timeout_s=self.timeout_s, max_body=64 * 1024)
            try:
                reply = await conn.request(
                    "POST", "/api/v1/heartbeat", body=data,
                    headers=[("content-type", "application/cbor")],
                )
            except RequestError as exc:
                errors.append(str(exc))
                continue
            finally:
                await conn.aclose()
            if reply.status in (200, 204):
                return
            errors.append(f"{hub}: HTTP {reply.status}")
        raise HubsUnreachable("heartbeat not accepted: " + "; ".join(errors))
