"""Fetch content-addressed objects from several mirrors, any of which may lie, stall, drip
or die; trust only the hash. Closed circuits are asked healthiest first, failing over on
any fault (which opens the circuit, `health.Breaker`), a cut-short body resumed with a
range, jittered backoff between rounds. No attempt starts past `give_up_s`: with every
mirror faulty, `Unavailable` within 10 s (docs/datapath.md, Timings). Every circuit open:
fail at once unless a trial is out (share its outcome); a fetch that sent requests itself
waits for the next trial in its window (a hub restarting under a read costs time, not the
read); `deadline_s` caps all. A wrong copy: its mirror demoted, reported, banned for it."""

import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio

from zosnode.fetch.backoff import Backoff
from zosnode.fetch.errors import CircuitOpen, FetchUsageError, Unavailable, WrongCopy
from zosnode.fetch.health import Fault, MirrorHealth, Pass
from zosnode.fetch.workers import on_cpu
from zosnode.http import client as http
from zosnode.layout import block_path, check_id, flist_path, object_id

# Per request, whatever client the fetcher shares: no byte for 2 s, or under 16 KiB/s, is a stall.
FETCH_TIMEOUTS = http.Timeouts(connect=2.0, head=2.5, body_idle=2.0, window_bytes=32 * 1024)

T = TypeVar("T")

# What fetched bytes decode to, None for a wrong copy; it raises for a faithful, unusable copy.
Check = Callable[[bytes], T | None]


class Fetcher:
    """Verified GETs over `mirrors` (base URLs of hubs or static mirrors)."""

    def __init__(self, mirrors: Sequence[str], *, client: http.HttpClient | None = None,
                 timeouts: http.Timeouts = FETCH_TIMEOUTS, deadline_s: float = 30.0,
                 attempt_s: float = 10.0, give_up_s: float = 7.5) -> None:
        if min(deadline_s, attempt_s, give_up_s) <= 0:
            raise FetchUsageError("deadlines must be positive")
        self.health = MirrorHealth([m.rstrip("/") for m in mirrors])
        self.client = client or http.HttpClient()
        self.timeouts = timeouts
        self.deadline_s, self.attempt_s, self.give_up_s = deadline_s, attempt_s, give_up_s
        self._backoff = Backoff()
        self._changed = trio.Event()  # set and replaced on each outcome (`_attempt`)
        self._slots: dict[str, trio.Semaphore] = {}

    def set_mirrors(self, mirrors: Sequence[str]) -> None:
        self.health.set_mirrors([m.rstrip("/") for m in mirrors])

    async def aclose(self) -> None:
        await self.client.aclose()

    async def fetch_block(self, block_id: str, *, max_size: int) -> bytes:
        return (await self._fetch(block_path(block_id), block_id, max_size, None))[0]

    async def fetch_flist(self, flist_id: str, *, max_size: int) -> bytes:
        return (await self._fetch(flist_path(flist_id), flist_id, max_size, None))[0]

    async def fetch_checked(self, path: str, oid: str, check: Check[T], *, max_size: int
                            ) -> tuple[bytes, T]:
        """The bytes and what `check` (run instead of the hash: one hash a block) made of them."""
        return await self._fetch(path, check_id(oid), max_size, check)

    async def _fetch(self, path: str, oid: str, max_size: int, check: Check[Any] | None
                     ) -> tuple[bytes, Any]:
        if max_size < 0:
            raise FetchUsageError("max_size must not be negative")
        give_up = trio.current_time() + min(self.give_up_s, self.deadline_s)
        last: Exception | None = None
        with trio.move_on_after(self.deadline_s):
            attempt = 0  # rounds that sent a request (one did: this fetch may wait out a cool-down)
            partial = b""
            partial_from: set[str] = set()
            while True:
                tried = False
                for mirror in self.health.order(oid, trio.current_time()):
                    if trio.current_time() > give_up:
                        break
                    try:
                        data = await self._try(mirror, path, oid, max_size, partial,
                                               partial_from, check)
                    except CircuitOpen:
                        continue
                    except (http.HttpPeerError, WrongCopy, _StartOver) as exc:
                        tried, last = True, exc
                        if not isinstance(exc, http.HttpTruncated):
                            # A failed resume (416, a 200, a dead mirror) starts over.
                            partial, partial_from = b"", set()
                        elif exc.expected is not None and exc.received:
                            partial_from.add(mirror)
                            partial += exc.received
                    else:
                        return data
                now = trio.current_time()
                if now > give_up:
                    break
                if tried:
                    await trio.sleep(min(self._backoff.delay(attempt, random.random()),
                                         give_up - now))
                    attempt += 1
                    continue
                # Every circuit open (see the module docstring), or no mirror left.
                ready = self.health.ready_at(oid, now)
                if ready is None:
                    raise Unavailable(f"{path}: every mirror served a wrong copy")
                if not self.health.trial_pending(oid) and (not attempt or ready > give_up):
                    raise Unavailable(f"{path}: no usable mirror (every circuit open;"
                                      f" next trial in {ready - now:.1f}s; last: {last})")
                with trio.move_on_at(min(ready, give_up)):
                    await self._changed.wait()
        raise Unavailable(f"{path}: not fetched within {self.deadline_s}s or no mirror usable"
                          f" (last: {last})")

    @asynccontextmanager
    async def _attempt(self, mirror: str, oid: str = "", partial_from: set[str] | None = None,
                       *, early: bool = False) -> AsyncIterator[None]:
        """A slot and a pass (else `CircuitOpen`); how the block ends is the mirror's verdict."""
        breaker = self.health.breaker(mirror)
        if (breaker.trial_pending or not early) \
                and breaker.ready_at(trio.current_time()) > trio.current_time():
            raise CircuitOpen(f"{mirror}: circuit open")
        # Admitted once a slot is ours: requests queued behind a tripping one are not sent.
        slot = self._slots.setdefault(mirror, trio.Semaphore(self.client.per_origin))
        async with slot:
            grant = breaker.admit(trio.current_time(), early=early)
            if grant is None:
                raise CircuitOpen(f"{mirror}: circuit open")
            try:
                yield
            except http.HttpPeerError as exc:
                self.health.failed(mirror, _fault(exc), trio.current_time(), grant)
                raise
            except WrongCopy:
                self._wrong_copy(mirror, grant, oid, partial_from or set())
                raise
            except BaseException:  # no verdict (a cancel, our bug): a trial is freed
                breaker.abandoned(trio.current_time(), grant)
                raise
            else:
                self.health.succeeded(mirror, trio.current_time(), grant)
            finally:
                self._changed.set()  # fetches waiting for a circuit look again
                self._changed = trio.Event()

    async def ask(self, mirror: str, path: str, *, max_size: int,
                  headers: Mapping[str, str] | None = None, ok: tuple[int, ...] = (200,),
                  early: bool = False) -> http.Reply:
        """One GET for what no hash checks (a manifest, a root: signed), through the reads'
        circuit, slots, timeouts and bound; a status outside `ok` raises `HttpStatusError`."""
        if mirror not in self.health.mirrors:
            raise FetchUsageError(f"{mirror} is not one of this fetcher's mirrors")
        async with self._attempt(mirror, early=early):
            return await self._get(f"{mirror}/{path}", max_size=max_size, headers=headers, ok=ok)

    async def _try(self, mirror: str, path: str, oid: str, max_size: int, partial: bytes,
                   partial_from: set[str], check: Check[Any] | None) -> tuple[bytes, Any]:
        unusable: Exception | None = None  # a faithful copy the caller cannot use: no fault
        async with self._attempt(mirror, oid, partial_from):
            url = f"{mirror}/{path}"
            if partial:
                if len(partial) >= max_size:
                    raise _StartOver(f"{url}: partial body already at the cap")
                # The total is unknown to a range request; ask for the rest up to the cap.
                rest = await self._get(url, max_size=max_size - len(partial),
                                       byte_range=(len(partial), max_size - 1))
                data = partial + rest.body
            else:
                data = (await self._get(url, max_size=max_size)).body
            # hashlib lets go of the GIL: big bodies hash beside the loop.
            value: Any = True
            if check is None:
                ok = await on_cpu(object_id, data, size=len(data)) == oid
            else:
                try:
                    value = await on_cpu(check, data, size=len(data))
                except Exception as exc:  # noqa: BLE001 - raised below, once reported
                    unusable = exc
                ok = unusable is not None or value is not None
            if not ok:
                raise WrongCopy(f"{url}: bytes do not match the id")
        if unusable is not None:
            raise unusable
        return data, value

    def _wrong_copy(self, mirror: str, grant: Pass, oid: str, partial_from: set[str]) -> None:
        now = trio.current_time()
        if not partial_from - {mirror}:
            self.health.served_wrong(mirror, oid, now, grant)
            return
        # Pieces from several mirrors: the liar is unknown.
        for m in partial_from | {mirror}:
            self.health.failed(m, Fault.CORRUPT, now, grant if m == mirror else Pass.NORMAL)

    async def _get(self, url: str, **kw: Any) -> http.Reply:
        """A GET with the fetcher's timeouts within the attempt bound (an overrun: a stall)."""
        try:
            with trio.fail_after(self.attempt_s):
                return await self.client.get(url, timeouts=self.timeouts, **kw)
        except trio.TooSlowError:
            raise http.HttpTimeout(f"{url}: no full answer within {self.attempt_s}s") from None


class _StartOver(Exception):
    """The pieces gathered already fill the cap: no verdict, start over."""


def _fault(exc: http.HttpPeerError) -> Fault:
    if isinstance(exc, http.HttpTruncated):
        return Fault.TRUNCATED
    if isinstance(exc, http.HttpTimeout):
        return Fault.STALL
    if isinstance(exc, http.HttpStatusError):
        return Fault.ERROR if exc.status >= 500 else Fault.MISSING
    return Fault.ERROR
