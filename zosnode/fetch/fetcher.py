"""Fetch content-addressed objects from several mirrors; trust only the hash.

Any mirror may lie, stall or die. For each object we ask the healthiest
mirror first, fail over on any fault, resume a cut-short body with a range
request, back off with jitter between rounds, and give up at the object's
deadline. Bytes leave this module only after their BLAKE2b-256 matches the id
asked for; a mirror that served a wrong copy is demoted, reported, and never
asked for that object again.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Sequence

import trio

from zosnode.fetch.backoff import Backoff
from zosnode.fetch.errors import FetchUsageError, IntegrityError, Unavailable
from zosnode.fetch.health import Fault, Incident, MirrorHealth
from zosnode.http.client import (
    HttpClient,
    HttpPeerError,
    HttpTimeout,
    HttpTruncated,
)

# A stored block is at most this big unless the caller says otherwise: the
# flist format's largest block plus compression/encryption overhead.
MAX_BLOCK_BYTES = 8 * 1024 * 1024 + 4096

_ID = re.compile(r"[0-9a-f]{64}")
_THREAD_OVER = 256 * 1024


def object_id(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=32).hexdigest()


def block_path(block_id: str) -> str:
    _check_id(block_id)
    return f"blocks/{block_id[:2]}/{block_id}"


def flist_path(flist_id: str) -> str:
    _check_id(flist_id)
    return f"flists/{flist_id}"


def _check_id(oid: str) -> None:
    if not _ID.fullmatch(oid):
        raise FetchUsageError(f"not a 64-hex-digit object id: {oid!r}")


class Fetcher:
    """Verified GETs over `mirrors` (base URLs of hubs or static mirrors)."""

    def __init__(
        self,
        mirrors: Sequence[str],
        *,
        client: HttpClient | None = None,
        deadline_s: float = 30.0,
        attempt_s: float = 10.0,
        backoff: Backoff | None = None,
        draw: Callable[[], float] = random.random,
    ) -> None:
        if deadline_s <= 0 or attempt_s <= 0:
            raise FetchUsageError("deadlines must be positive")
        self.health = MirrorHealth([m.rstrip("/") for m in mirrors])
        self.client = client or HttpClient()
        self.deadline_s = deadline_s
        self.attempt_s = attempt_s
        self._backoff = backoff or Backoff()
        self._draw = draw

    @property
    def incidents(self) -> list[Incident]:
        """Mirrors caught serving wrong bytes (most recent last)."""
        return list(self.health.incidents)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def fetch_block(self, block_id: str, *, max_size: int = MAX_BLOCK_BYTES) -> bytes:
        return await self.fetch_object(block_path(block_id), block_id, max_size=max_size)

    async def fetch_flist(self, flist_id: str, *, max_size: int) -> bytes:
        return await self.fetch_object(flist_path(flist_id), flist_id, max_size=max_size)

    async def fetch_object(
        self, path: str, oid: str, *, max_size: int, deadline_s: float | None = None
    ) -> bytes:
        """The object at `path` on some mirror, verified to hash to `oid`."""
        _check_id(oid)
        if max_size < 0:
            raise FetchUsageError("max_size must not be negative")
        last: Exception | None = None
        with trio.move_on_after(deadline_s or self.deadline_s):
            attempt = 0
            partial = b""
            partial_from: set[str] = set()
            while True:
                mirrors = self.health.order(oid, trio.current_time())
                if not mirrors:
                    raise Unavailable(f"{path}: every mirror served a wrong copy")
                for mirror in mirrors:
                    try:
                        data = await self._one(mirror, path, max_size, partial)
                    except HttpTruncated as exc:
                        last = exc
                        if exc.expected is not None and exc.received:
                            partial_from.add(mirror)
                            partial += exc.received
                        continue
                    except (HttpPeerError, IntegrityError) as exc:
                        # A failed resume (416, a 200, a dead mirror) starts over.
                        last = exc
                        partial, partial_from = b"", set()
                        continue
                    sources = partial_from | {mirror}
                    partial, partial_from = b"", set()
                    # hashlib lets go of the GIL: big bodies hash beside the loop.
                    if len(data) > _THREAD_OVER:
                        got = await trio.to_thread.run_sync(object_id, data)
                    else:
                        got = object_id(data)
                    now = trio.current_time()
                    if got == oid:
                        self.health.succeeded(mirror, now)
                        return data
                    last = IntegrityError(f"{mirror}/{path}: bytes do not match the id")
                    if len(sources) == 1:
                        self.health.served_wrong(mirror, oid, now)
                    else:
                        # Pieces from several mirrors: the liar is unknown.
                        for m in sources:
                            self.health.failed(m, Fault.CORRUPT, now)
                await trio.sleep(self._backoff.delay(attempt, self._draw()))
                attempt += 1
        raise Unavailable(f"{path}: not fetched within {deadline_s or self.deadline_s}s"
                          f" (last: {last})")

    async def _one(self, mirror: str, path: str, max_size: int, partial: bytes) -> bytes:
        """One GET (a range GET when resuming); faults are recorded, then re-raised."""
        url = f"{mirror}/{path}"
        try:
            with trio.fail_after(self.attempt_s):
                if partial:
                    return partial + await self._resume(url, max_size, partial)
                return (await self.client.get(url, max_size=max_size)).body
        except trio.TooSlowError:
            self.health.failed(mirror, Fault.STALL, trio.current_time())
            raise HttpTimeout(f"{url}: no full answer within {self.attempt_s}s") from None
        except HttpTruncated:
            self.health.failed(mirror, Fault.TRUNCATED, trio.current_time())
            raise
        except HttpTimeout:
            self.health.failed(mirror, Fault.STALL, trio.current_time())
            raise
        except HttpPeerError:
            self.health.failed(mirror, Fault.ERROR, trio.current_time())
            raise

    async def _resume(self, url: str, max_size: int, partial: bytes) -> bytes:
        if len(partial) >= max_size:
            raise IntegrityError(f"{url}: partial body already at the cap")
        # The total is unknown to a range request; ask for the rest up to the cap.
        resp = await self.client.get(
            url, max_size=max_size - len(partial), byte_range=(len(partial), max_size - 1)
        )
        return resp.body
