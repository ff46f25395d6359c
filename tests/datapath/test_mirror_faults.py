"""Issue #19: no input may stop a node. Mirrors that stall, drip, truncate,
black-hole, refuse or answer 5xx, alone and in front of a good mirror.

What must hold: never a wrong byte; with no usable mirror a fetch fails
(`Unavailable`, EIO through FUSE) within BOUND_S, the bound documented in
docs/datapath.md; concurrent readers of one block share one fetch and its
one failure; an open circuit fails the next reads at once; reads recover by
themselves once the mirror is back; a bad mirror in front of good ones costs
seconds once, not per block. Timings are printed (`pytest -s`) and asserted
only against that bound.

Also the HTTP client's response framing rules (RFC 9112 §6.3), fed from a raw
loopback socket server.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.datapath.conftest import build_flist, put_block
from tests.datapath.fuse import require_fuse
from tests.lab.faulty_mirror import BlackHole, Fault, FaultyMirror
from zosnode.cache.store import BlockCache
from zosnode.cli.flist_remote import mounted
from zosnode.fetch.errors import FetchUsageError, Unavailable
from zosnode.fetch.fetcher import Fetcher
from zosnode.fetch.health import (
    Breaker,
    BreakerPolicy,
    Circuit,
    MirrorHealth,
    Pass,
)
from zosnode.fetch.health import Fault as Health
from zosnode.flist.browse import lookup
from zosnode.flist.view import FlistView
from zosnode.http.client import (
    ByteProgress,
    HttpClient,
    HttpMalformed,
    HttpPeerError,
    HttpTimeout,
    HttpTruncated,
    Timeouts,
    final_head,
    framing_fault,
)
from zosnode.layout import block_path

# docs/datapath.md: with every mirror faulty, Unavailable / EIO within this.
BOUND_S = 10.0
# Real-clock (FUSE) runs on a shared, loaded machine: scheduling noise only.
SLACK_S = 1.0


def report(line: str) -> None:
    print(f"[#19] {line}")


# --- the breaker, pure ------------------------------------------------------


def _state(b: Breaker) -> Circuit:
    return b.state  # read through a call: mypy would keep a narrowed type across calls


def _breaker() -> Breaker:
    return Breaker(BreakerPolicy(cooldown_s=1.0, max_cooldown_s=4.0, trial_lease_s=5.0))


def test_breaker_closed_open_half_open_closed() -> None:
    b = _breaker()
    assert b.state is Circuit.CLOSED and b.admit(0.0) is Pass.NORMAL
    b.failed(0.5, Pass.NORMAL)
    assert _state(b) is Circuit.OPEN
    assert b.admit(1.0) is None and b.ready_at(1.0) == 1.5
    # After the cool-down exactly one trial goes out; nobody else meanwhile.
    assert b.admit(1.5) is Pass.TRIAL and _state(b) is Circuit.HALF_OPEN
    assert b.admit(1.6) is None and b.trial_pending
    b.succeeded(2.0, Pass.TRIAL)
    assert _state(b) is Circuit.CLOSED and b.admit(2.0) is Pass.NORMAL


def test_breaker_failed_trials_double_the_cooldown_up_to_its_cap() -> None:
    b = _breaker()
    b.failed(0.0, Pass.NORMAL)
    now, cooldowns = 0.0, []
    for _ in range(5):
        now = b.ready_at(now)
        assert b.admit(now) is Pass.TRIAL
        b.failed(now, Pass.TRIAL)
        cooldowns.append(b.ready_at(now) - now)
    assert cooldowns == [2.0, 4.0, 4.0, 4.0, 4.0]
    # A success forgets the history: the next fault costs the base cool-down.
    now = b.ready_at(now)
    assert b.admit(now) is Pass.TRIAL
    b.succeeded(now, Pass.TRIAL)
    b.failed(now, Pass.NORMAL)
    assert b.ready_at(now) - now == 1.0


def test_breaker_only_the_trial_decides() -> None:
    # Requests let through before the circuit opened report late: stale.
    b = _breaker()
    b.failed(0.0, Pass.NORMAL)
    b.failed(0.5, Pass.NORMAL)
    b.succeeded(0.6, Pass.NORMAL)
    assert b.state is Circuit.OPEN and b.ready_at(0.6) == 1.0
    assert b.admit(1.0) is Pass.TRIAL
    b.failed(1.1, Pass.NORMAL)
    b.succeeded(1.2, Pass.NORMAL)
    assert _state(b) is Circuit.HALF_OPEN
    b.failed(1.5, Pass.TRIAL)
    assert _state(b) is Circuit.OPEN and b.ready_at(1.5) == 3.5


def test_breaker_abandoned_trial_frees_the_slot_and_a_lost_one_expires() -> None:
    b = _breaker()
    b.failed(0.0, Pass.NORMAL)
    assert b.admit(1.0) is Pass.TRIAL
    b.abandoned(1.2, Pass.TRIAL)  # cancelled: no verdict, next one may try
    assert b.admit(1.2) is Pass.TRIAL
    # Never reported (a bug): the lease runs out and another trial goes.
    assert b.admit(6.1) is None and b.admit(6.2) is Pass.TRIAL


def test_breaker_policy_validated() -> None:
    for bad in ({"cooldown_s": 0.0}, {"cooldown_s": 5.0, "max_cooldown_s": 1.0},
                {"trial_lease_s": 0.0}):
        with pytest.raises(FetchUsageError):
            BreakerPolicy(**bad)


def test_missing_object_does_not_trip_a_circuit() -> None:
    h = MirrorHealth(["a", "b"])
    h.failed("a", Health.MISSING, 0.0)
    assert h.breaker("a").state is Circuit.CLOSED and h.order("x", 0.1) == ["b", "a"]
    h.failed("a", Health.STALL, 0.2)
    assert h.breaker("a").state is Circuit.OPEN
    # A trial answered (even with a 404) shows the mirror works again.
    assert h.breaker("a").admit(1.2) is Pass.TRIAL
    h.failed("a", Health.MISSING, 1.3, Pass.TRIAL)
    assert h.breaker("a").state is Circuit.CLOSED


def test_open_circuits_rank_after_closed_ones_by_when_they_may_be_tried() -> None:
    h = MirrorHealth(["a", "b", "c"], breaker=BreakerPolicy(cooldown_s=1.0))
    h.failed("a", Health.ERROR, 0.0)  # ready at 1
    h.failed("b", Health.ERROR, 0.5)  # ready at 1.5
    assert h.order("x", 0.6) == ["c", "a", "b"]
    assert h.ready_at("x", 0.6) == 0.6  # c is closed
    h.failed("c", Health.ERROR, 0.7)
    assert h.ready_at("x", 0.8) == 1.0 and not h.trial_pending("x")


# --- byte progress and framing, pure -----------------------------------------


def test_progress_rule_counts_bytes_per_window() -> None:
    p = ByteProgress(window_s=2.0, min_bytes=10, start=0.0)
    assert p.deadline() == 2.0
    p.received(5, 1.0)
    assert p.deadline() == 2.0  # short of the quota: the same window
    p.received(5, 1.5)
    assert p.deadline() == 3.5  # quota met: the next window opens
    for t in (2.0, 2.5, 3.0, 3.4):  # a drip never meets it
        p.received(1, t)
    assert p.deadline() == 3.5


@pytest.mark.parametrize(("head", "why"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", None),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", None),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", "both"),
    (b"HTTP/1.1 200 OK\nContent-Length: 5\ntransfer-encoding: chunked\n\n", "both"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", "several"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", "several"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "only chunked"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
     "only chunked"),
    (b"HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 5\r\n\r\n", "folding"),
    (b"HTTP/1.1 200 OK\r\nX-A: b\r\n\tc\r\nContent-Length: 5\r\n\r\n", "folding"),
])
def test_framing_fault(head: bytes, why: str | None) -> None:
    got = framing_fault(head)
    assert (got is None) if why is None else (got is not None and why in got)


def test_final_head_skips_informational_heads() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\nContent-Length: 2\n\nhi\r\n\r\n"
    assert final_head(raw, 1) == b"HTTP/1.1 200 OK\nContent-Length: 2\n\n"
    assert final_head(raw, 0) == b"HTTP/1.1 100 Continue\r\n\r\n"


# --- the HTTP client against a raw loopback server -----------------------------


class RawServer:
    """Answers each request on a connection with the next script, byte for byte.

    A script is a list of bytes to send and floats to sleep. The server
    counts connections and how many the client closed.
    """

    def __init__(self, scripts: list[list[bytes | float]]) -> None:
        self.scripts = scripts
        self.port = 0
        self.connections = 0
        self.closed_by_client = 0
        self.requests = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = await stream.receive_some(65536)
                    if not data:
                        self.closed_by_client += 1
                        return
                    buf += data
                buf = buf.split(b"\r\n\r\n", 1)[1]
                script = self.scripts[min(self.requests, len(self.scripts) - 1)]
                self.requests += 1
                for step in script:
                    if isinstance(step, float):
                        await trio.sleep(step)
                    else:
                        await stream.send_all(step)
        except trio.BrokenResourceError:
            self.closed_by_client += 1
        finally:
            await trio.aclose_forcefully(stream)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/x"


@asynccontextmanager
async def raw_server(scripts: list[list[bytes | float]]) -> AsyncIterator[RawServer]:
    server = RawServer(scripts)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, server.handle, 0,
                                                host="127.0.0.1"))
        server.port = listeners[0].socket.getsockname()[1]
        yield server
        nursery.cancel_scope.cancel()


GOOD = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
GOOD_CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
REFUSED_HEADS = {
    "te-and-cl": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
                 b"5\r\nhello\r\n0\r\n\r\n",
    "cl-twice": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    "cl-list": b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello",
    "cl-conflict": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    "te-gzip": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello",
    "te-gzip-chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                       b"5\r\nhello\r\n0\r\n\r\n",
    "te-twice": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked"
                b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "obs-fold": b"HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 5\r\n\r\nhello",
    "bare-lf-te-and-cl": b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\nContent-Length: 5\n\n"
                         b"5\r\nhello\r\n0\r\n\r\n",
}


async def test_well_framed_responses_keep_the_connection() -> None:
    async with raw_server([[GOOD], [GOOD_CHUNKED]]) as server, aclosing(HttpClient()) as client:
        assert (await client.get(server.url, max_size=100)).body == b"hello"
        assert (await client.get(server.url, max_size=100)).body == b"hello"
        assert server.connections == 1 and server.requests == 2


@pytest.mark.parametrize("name", sorted(REFUSED_HEADS))
async def test_ambiguous_framing_is_refused_and_the_connection_dropped(name: str) -> None:
    async with raw_server([[REFUSED_HEADS[name]], [GOOD]]) as server, \
            aclosing(HttpClient()) as client:
        with pytest.raises(HttpMalformed) as info:
            await client.get(server.url, max_size=100)
        assert isinstance(info.value, HttpPeerError)
        assert sum(len(v) for v in client._idle.values()) == 0
        # The next request goes on a fresh connection; the old one was closed.
        assert (await client.get(server.url, max_size=100)).body == b"hello"
        assert server.connections == 2
        await trio.sleep(0.05)
        assert server.closed_by_client >= 1


async def test_bytes_after_the_body_forbid_reuse() -> None:
    async with raw_server([[GOOD + b"HTTP/1.1 200 OK\r\n"], [GOOD]]) as server, \
            aclosing(HttpClient()) as client:
        assert (await client.get(server.url, max_size=100)).body == b"hello"
        assert (await client.get(server.url, max_size=100)).body == b"hello"
        assert server.connections == 2


async def test_a_304_has_no_body_whatever_its_content_length() -> None:
    # RFC 9110 §8.6: a 304 may carry the Content-Length a 200 would have had.
    not_modified = b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 1000\r\n\r\n"
    async with raw_server([[not_modified], [GOOD]]) as server, aclosing(HttpClient()) as client:
        reply = await client.get(server.url, max_size=100, ok=(200, 304))
        assert (reply.status, reply.body) == (304, b"")
        assert (await client.get(server.url, max_size=100)).body == b"hello"
        assert server.connections == 1


_T = Timeouts(connect=2.0, head=2.5, body_idle=2.0, window_bytes=4)
_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n"


async def test_dripped_body_is_cut_within_one_window(
    autojump_clock: trio.testing.MockClock,
) -> None:
    drip: list[bytes | float] = [_HEAD]
    for _ in range(40):
        drip += [b"x", 1.0]
    async with raw_server([drip]) as server, aclosing(HttpClient()) as client:
        start = trio.current_time()
        with pytest.raises(HttpTruncated) as info:
            await client.get(server.url, max_size=100, timeouts=_T)
        assert trio.current_time() - start == pytest.approx(2.0, abs=0.1)
        assert 1 <= len(info.value.received) <= 3  # what came is kept for a resume


async def test_slow_body_above_the_quota_is_not_a_stall(
    autojump_clock: trio.testing.MockClock,
) -> None:
    slow: list[bytes | float] = [_HEAD]
    for _ in range(10):
        slow += [b"xxxx", 1.5]  # 4 bytes every 1.5 s: the 2 s window's quota
    async with raw_server([slow]) as server, aclosing(HttpClient()) as client:
        resp = await client.get(server.url, max_size=100, timeouts=_T)
        assert resp.body == b"x" * 40


async def test_dripped_head_and_silence_time_out(autojump_clock: trio.testing.MockClock) -> None:
    drip: list[bytes | float] = []
    for i in range(len(_HEAD)):
        drip += [_HEAD[i : i + 1], 1.0]
    async with raw_server([drip, [3600.0]]) as server, aclosing(HttpClient()) as client:
        start = trio.current_time()
        with pytest.raises(HttpTimeout):
            await client.get(server.url, max_size=100, timeouts=_T)
        assert trio.current_time() - start == pytest.approx(2.5, abs=0.1)
        start = trio.current_time()
        with pytest.raises(HttpTimeout):  # accepts, never a byte
            await client.get(server.url, max_size=100, timeouts=_T)
        assert trio.current_time() - start == pytest.approx(2.0, abs=0.1)


# --- the fetcher against each fault, alone and in front of a good mirror -----

KINDS = {
    "stall-head": Fault.STALL_HEAD,  # accepts, reads the request, never answers
    "stall-body": Fault.STALL_BODY,
    "drip": Fault.DRIP,
    "drip-head": Fault.DRIP_HEAD,
    "truncate": Fault.TRUNCATE,
    "500": Fault.ERROR_500,
    "503": Fault.ERROR_503,
    "corrupt": Fault.CORRUPT,
    "refused": None,
    "black-hole": None,
}


@asynccontextmanager
async def bad_mirror(kind: str, data_dir: Path) -> AsyncIterator[tuple[str, FaultyMirror | None]]:
    if kind == "black-hole":
        with BlackHole() as hole:
            yield hole.url, None
        return
    async with trio.open_nursery() as nursery:
        m = FaultyMirror(data_dir)
        await m.start(nursery)
        fault = KINDS[kind]
        if fault is None:
            await m.stop()  # nothing listens: connection refused
        else:
            m.fail(None, fault)
        yield m.url, m
        nursery.cancel_scope.cancel()


def _blocks(data_dir: Path, n: int, size: int = 20_000) -> list[tuple[str, bytes]]:
    # Small enough to hash inline: under the mock clock no worker threads.
    out = []
    for _ in range(n):
        data = os.urandom(size)
        out.append((put_block(data_dir, data), data))
    return out


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_fault_alone_is_unavailable_within_the_bound(
    kind: str, data_dir: Path, autojump_clock: trio.testing.MockClock
) -> None:
    blocks = _blocks(data_dir, 3)
    async with bad_mirror(kind, data_dir) as (url, _):
        f = Fetcher([url])
        times = []
        for bid, data in blocks:
            start = trio.current_time()
            with pytest.raises(Unavailable):
                await f.fetch_block(bid, max_size=len(data))
            times.append(trio.current_time() - start)
        await f.aclose()
    report(f"fetcher, {kind:10s} alone: Unavailable after "
           + ", ".join(f"{t:.1f}s" for t in times) + " (three blocks in a row)")
    assert max(times) <= BOUND_S
    # The circuit is open once the first fetch gave up: the next fails at once.
    assert times[1] < 0.5


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_fault_in_front_of_a_good_mirror_costs_seconds_once(
    kind: str, data_dir: Path, mirror2: FaultyMirror, autojump_clock: trio.testing.MockClock
) -> None:
    blocks = _blocks(data_dir, 6)
    async with bad_mirror(kind, data_dir) as (url, bad):
        f = Fetcher([url, mirror2.url])
        start = trio.current_time()
        for bid, data in blocks:
            assert await f.fetch_block(bid, max_size=len(data)) == data  # never a wrong byte
        lost = trio.current_time() - start  # the good mirror answers in no mock time
        await f.aclose()
        if bad is not None:
            assert sum(bad.requests[block_path(b)] for b, _ in blocks[1:]) == 0
    report(f"fetcher, {kind:10s} in front of a good mirror: {lost:.1f}s lost over 6 blocks")
    assert lost <= BOUND_S
    if kind == "corrupt":
        assert [i.mirror for i in f.health.incidents] == [url]


async def test_booting_node_with_one_bad_hub_loses_seconds_once(
    data_dir: Path, mirror: FaultyMirror, mirror2: FaultyMirror,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Three hubs, the first stalls; 40 blocks fetched 8 at a time, as the
    # eager extract does.
    blocks = _blocks(data_dir, 40)
    async with bad_mirror("stall-head", data_dir) as (url, bad):
        assert bad is not None
        f = Fetcher([url, mirror.url, mirror2.url])
        limit = trio.Semaphore(8)
        got: dict[str, bytes] = {}

        async def one(bid: str, size: int) -> None:
            async with limit:
                got[bid] = await f.fetch_block(bid, max_size=size)

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for bid, data in blocks:
                nursery.start_soon(one, bid, len(data))
        lost = trio.current_time() - start
        await f.aclose()
    asked = sum(bad.requests.values())
    report(f"boot, 3 hubs, first stalls: 40 blocks in {lost:.1f}s; the staller was asked"
           f" {asked} times")
    assert got == dict(blocks)
    # Only the requests already sent when its circuit opened (4 per origin).
    assert asked <= 4 and lost <= BOUND_S


async def test_fetcher_keeps_its_deadlines_on_a_shared_lenient_client(
    data_dir: Path, mirror: FaultyMirror, mirror2: FaultyMirror,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The node's hub client (10 s timeouts) lends its pool to the fetcher.
    (bid, data), = _blocks(data_dir, 1)
    mirror.fail(None, Fault.STALL_HEAD)
    client = HttpClient(timeouts=Timeouts(connect=10.0, head=10.0, body_idle=10.0))
    f = Fetcher([mirror.url, mirror2.url], client=client)
    start = trio.current_time()
    assert await f.fetch_block(bid, max_size=len(data)) == data
    assert trio.current_time() - start == pytest.approx(2.0, abs=0.1)
    await f.aclose()


@pytest.fixture
def lazy_clock() -> trio.testing.MockClock:
    # The block cache reads in worker threads: jump only once truly idle.
    return trio.testing.MockClock(autojump_threshold=0.05)


async def test_readers_of_one_block_share_one_failure_then_fail_fast_then_recover(
    tmp_path: Path, data_dir: Path, mirror: FaultyMirror, lazy_clock: trio.testing.MockClock
) -> None:
    (bid, data), = _blocks(data_dir, 1)
    mirror.fail(None, Fault.STALL_HEAD)
    f = Fetcher([mirror.url])
    cache = BlockCache(tmp_path / "cache", 1 << 20)

    async def read() -> bytes | memoryview:
        return await cache.get_or_fetch(bid, lambda: f.fetch_block(bid, max_size=len(data)))

    ends: list[float] = []

    async def reader() -> None:
        with pytest.raises(Unavailable):
            await read()
        ends.append(trio.current_time())

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(reader)
    waits = [t - start for t in ends]
    report("fetcher+cache, 4 readers of one block, staller alone: Unavailable after "
           + ", ".join(f"{t:.1f}s" for t in waits) + f" ({cache.stats.fetches} fetch)")
    # One fetch, one failure for all (on main: 30, 60, 90, 120 s, one after another).
    assert cache.stats.fetches == 1 and max(waits) <= BOUND_S
    assert max(waits) - min(waits) < 0.5
    asked = mirror.requests[block_path(bid)]

    # Every circuit is open now: the next read fails at once, asking no one.
    start = trio.current_time()
    with pytest.raises(Unavailable):
        await read()
    assert trio.current_time() - start < 0.5 and mirror.requests[block_path(bid)] == asked

    # The mirror comes back: after the cool-down one trial, and reads go on.
    mirror.heal()
    ready = f.health.ready_at(bid, trio.current_time())
    assert ready is not None
    await trio.sleep_until(ready)
    assert await read() == data
    assert f.health.breaker(mirror.url).state is Circuit.CLOSED


async def test_read_in_flight_survives_a_short_outage(
    data_dir: Path, mirror: FaultyMirror, autojump_clock: trio.testing.MockClock
) -> None:
    # A read already under way waits out cool-downs within its window: a hub
    # restarting under it costs time, not the read.
    (bid, data), = _blocks(data_dir, 1)
    mirror.fail(block_path(bid), Fault.DIE, times=1)
    f = Fetcher([mirror.url])
    got: list[bytes] = []

    async def read() -> None:
        got.append(await f.fetch_block(bid, max_size=len(data)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await trio.sleep(2.0)
        await mirror.restart()
    assert got == [data]


# --- through FUSE (real clock, root) -------------------------------------------


@pytest.fixture
def shared_tree(tmp_path: Path, data_dir: Path) -> tuple[Path, bytes, str]:
    """Four files with the same content (so one block), and the flist."""
    require_fuse()
    src = tmp_path / "src"
    src.mkdir()
    content = os.urandom(200_000)
    for i in range(4):
        (src / f"f{i}").write_bytes(content)
    data, _ = build_flist(src, data_dir)
    view = FlistView.from_bytes(data)
    ids = {getattr(lookup(view, f"f{i}").extents[0], "id", None) for i in range(4)}
    assert len(ids) == 1, "the four files should share one block"
    (bid,) = ids
    assert isinstance(bid, str)
    return src, data, bid


def _read_all(mnt: Path, names: list[str]) -> list[tuple[str, float, bytes | int]]:
    """Read the files in parallel threads: (name, seconds, bytes or errno)."""
    out: list[tuple[str, float, bytes | int]] = []
    lock = threading.Lock()
    start = time.monotonic()

    def one(name: str) -> None:
        try:
            result: bytes | int = (mnt / name).read_bytes()
        except OSError as exc:
            result = exc.errno or -1
        with lock:
            out.append((name, time.monotonic() - start, result))

    threads = [threading.Thread(target=one, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


async def test_fuse_four_readers_behind_a_staller_fail_together_then_recover(
    tmp_path: Path, shared_tree: tuple[Path, bytes, str], mirror: FaultyMirror
) -> None:
    src, flist, bid = shared_tree
    content = (src / "f0").read_bytes()
    mirror.fail(None, Fault.STALL_HEAD)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    names = [f"f{i}" for i in range(4)]
    async with mounted(flist, mnt, Fetcher([mirror.url]), BlockCache(tmp_path / "c", 1 << 30),
                       prefetch=False) as m:
        results = await trio.to_thread.run_sync(_read_all, mnt, names)
        times = sorted(t for _, t, _ in results)
        report("FUSE, 4 readers of one block, staller alone: EIO after "
               + ", ".join(f"{t:.1f}s" for t in times))
        assert all(r == errno.EIO for _, _, r in results)
        assert times[-1] <= BOUND_S + SLACK_S and times[-1] - times[0] < 1.0
        assert m.fs.read_errors >= 4

        # Open circuit: the next read is EIO at once.
        (result,) = await trio.to_thread.run_sync(_read_all, mnt, ["f0"])
        report(f"FUSE, next read with the circuit open: EIO after {result[1]:.2f}s")
        assert result[2] == errno.EIO and result[1] < 1.0

        # The mirror comes back: reads recover by themselves (half-open trial).
        mirror.heal()
        healed = time.monotonic()
        limit = healed + 30.0 + BOUND_S  # the longest cool-down, then one read
        while True:
            (result,) = await trio.to_thread.run_sync(_read_all, mnt, ["f1"])
            if result[2] == content or time.monotonic() > limit:
                break
            await trio.sleep(0.5)
        report(f"FUSE, mirror back: reads good again {time.monotonic() - healed:.1f}s later")
        assert result[2] == content
        again = await trio.to_thread.run_sync(_read_all, mnt, names)
        assert all(r == content for _, _, r in again)


FUSE_KINDS = ["stall-head", "drip", "truncate", "500", "black-hole"]


@pytest.mark.parametrize("kind", FUSE_KINDS)
async def test_fuse_fault_alone_and_in_front_of_a_good_mirror(
    kind: str, tmp_path: Path, shared_tree: tuple[Path, bytes, str], data_dir: Path,
    mirror2: FaultyMirror,
) -> None:
    src, flist, _ = shared_tree
    content = (src / "f0").read_bytes()
    async with bad_mirror(kind, data_dir) as (url, _):
        (tmp_path / "alone").mkdir()
        async with mounted(flist, tmp_path / "alone", Fetcher([url]),
                           BlockCache(tmp_path / "c1", 1 << 30), prefetch=False):
            (alone,) = await trio.to_thread.run_sync(_read_all, tmp_path / "alone", ["f0"])
        (tmp_path / "front").mkdir()
        async with mounted(flist, tmp_path / "front", Fetcher([url, mirror2.url]),
                           BlockCache(tmp_path / "c2", 1 << 30), prefetch=False):
            front = await trio.to_thread.run_sync(
                _read_all, tmp_path / "front", [f"f{i}" for i in range(4)])
    lost = max(t for _, t, _ in front)
    report(f"FUSE, {kind:10s}: alone EIO after {alone[1]:.1f}s; in front of a good mirror"
           f" {lost:.1f}s lost (4 readers)")
    assert alone[2] == errno.EIO and alone[1] <= BOUND_S + SLACK_S
    assert all(r == content for _, _, r in front) and lost <= BOUND_S + SLACK_S
