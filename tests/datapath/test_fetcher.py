"""The fetcher: failover, health, hash check, resume — against misbehaving mirrors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import trio

from tests.lab.faulty_mirror import Fault, FaultyMirror
from tests.lab.nginx import nginx
from zosnode.fetch.backoff import Backoff
from zosnode.fetch.errors import CircuitOpen, FetchUsageError, Unavailable
from zosnode.fetch.fetcher import Fetcher
from zosnode.fetch.health import PENALTY, Circuit, MirrorHealth, Pass
from zosnode.fetch.health import Fault as Health
from zosnode.http.client import HttpStatusError, Timeouts
from zosnode.layout import LayoutError, block_path


def _largest(blobs: dict[str, bytes]) -> tuple[str, bytes]:
    return max(blobs.items(), key=lambda kv: len(kv[1]))


def _mid(blobs: dict[str, bytes]) -> tuple[str, bytes]:
    # Small enough to be hashed inline: under the mock clock, time jumps
    # while a worker thread runs, so timed tests avoid threads.
    return next((k, v) for k, v in blobs.items() if len(v) == 65536)


def _fetcher(*urls: str, deadline: float = 30.0) -> Fetcher:
    # The fetcher's own per-request timeouts apply whatever the client's are.
    timeouts = Timeouts(connect=2.0, head=3.0, body_idle=3.0, window_bytes=16 * 1024)
    return Fetcher(list(urls), timeouts=timeouts, deadline_s=deadline, attempt_s=5.0)


def test_backoff_is_bounded_and_jittered() -> None:
    b = Backoff(base_s=0.1, cap_s=1.0)
    assert b.delay(0, 0.5) == pytest.approx(0.05)
    assert b.delay(10, 0.999) < 1.0
    assert b.delay(1000, 0.0) == 0.0
    with pytest.raises(FetchUsageError):
        b.delay(0, 1.0)


def test_health_orders_and_decays() -> None:
    h = MirrorHealth(["a", "b", "c"], half_life_s=10.0)
    assert h.order("x", 0.0) == ["a", "b", "c"]
    h.failed("a", Health.STALL, 0.0)
    assert h.order("x", 1.0) == ["b", "c", "a"]
    # Its circuit opened: it stays last until a trial succeeds; then, after
    # many half-lives, the penalty is forgotten too.
    assert h.order("x", 1000.0) == ["b", "c", "a"]
    assert h.breaker("a").admit(1000.0) is Pass.TRIAL
    h.succeeded("a", 1000.0, Pass.TRIAL)
    assert h.order("x", 2000.0) == ["a", "b", "c"]
    h.served_wrong("b", "x", 2000.0)
    assert h.order("x", 2000.0) == ["a", "c"]
    assert "b" in h.order("y", 2000.0)
    assert [i.mirror for i in h.incidents] == ["b"]


async def test_fetch_verified(mirror: FaultyMirror, blobs: dict[str, bytes]) -> None:
    f = _fetcher(mirror.url)
    for bid, data in blobs.items():
        assert await f.fetch_block(bid, max_size=len(data)) == data
    await f.aclose()


async def test_corrupt_mirror_is_banned_and_other_serves(
    mirror: FaultyMirror, mirror2: FaultyMirror, blobs: dict[str, bytes]
) -> None:
    bid, data = _largest(blobs)
    mirror.fail(None, Fault.CORRUPT)
    f = _fetcher(mirror.url, mirror2.url)
    got = await f.fetch_block(bid, max_size=len(data))
    assert hashlib.blake2b(got, digest_size=32).hexdigest() == bid and got == data
    assert [(i.mirror, i.object_id) for i in f.health.incidents] == [(mirror.url, bid)]
    # The liar is never asked for that block again, even when it is healthiest.
    mirror.heal()
    for _ in range(3):
        await f.fetch_block(bid, max_size=len(data))
    assert mirror.requests[block_path(bid)] == 1
    await f.aclose()


async def test_only_corrupt_mirrors_is_unavailable(
    mirror: FaultyMirror, blobs: dict[str, bytes]
) -> None:
    bid, data = _largest(blobs)
    mirror.fail(None, Fault.CORRUPT)
    f = _fetcher(mirror.url)
    with pytest.raises(Unavailable):
        await f.fetch_block(bid, max_size=len(data))
    await f.aclose()


async def test_stalled_mirror_fails_over_within_deadline(
    mirror: FaultyMirror, mirror2: FaultyMirror, blobs: dict[str, bytes],
    autojump_clock: trio.testing.MockClock,
) -> None:
    bid, data = _mid(blobs)
    mirror.fail(None, Fault.STALL_HEAD)
    f = _fetcher(mirror.url, mirror2.url, deadline=10.0)
    start = trio.current_time()
    assert await f.fetch_block(bid, max_size=len(data)) == data
    assert trio.current_time() - start < 10.0
    # Demoted: the next block goes to the healthy mirror first.
    other = next(b for b in blobs if b != bid and len(blobs[b]) < 65536)
    await f.fetch_block(other, max_size=len(blobs[other]))
    assert mirror.requests[block_path(other)] == 0 and mirror2.requests[block_path(other)] == 1
    await f.aclose()


async def test_stall_mid_body_fails_over(
    mirror: FaultyMirror, mirror2: FaultyMirror, blobs: dict[str, bytes],
    autojump_clock: trio.testing.MockClock,
) -> None:
    bid, data = _mid(blobs)
    mirror.fail(None, Fault.STALL_BODY)
    f = _fetcher(mirror.url, mirror2.url, deadline=10.0)
    assert await f.fetch_block(bid, max_size=len(data)) == data
    await f.aclose()


async def test_truncated_response_resumes_with_range(
    mirror: FaultyMirror, blobs: dict[str, bytes]
) -> None:
    bid, data = _largest(blobs)
    mirror.fail(block_path(bid), Fault.TRUNCATE, times=1)
    f = _fetcher(mirror.url)
    assert await f.fetch_block(bid, max_size=len(data)) == data
    # Two requests: the cut-short one and a range request for the rest.
    assert mirror.requests[block_path(bid)] == 2
    await f.aclose()


async def test_5xx_retried_with_backoff(
    mirror: FaultyMirror, blobs: dict[str, bytes], autojump_clock: trio.testing.MockClock
) -> None:
    bid, data = _mid(blobs)
    mirror.fail(None, Fault.ERROR_503, times=3)
    f = _fetcher(mirror.url)
    assert await f.fetch_block(bid, max_size=len(data)) == data
    assert mirror.requests[block_path(bid)] == 4
    await f.aclose()


async def test_hub_killed_mid_read_and_restarted(
    mirror: FaultyMirror, blobs: dict[str, bytes], autojump_clock: trio.testing.MockClock
) -> None:
    bid, data = _mid(blobs)
    mirror.fail(block_path(bid), Fault.DIE, times=1)
    f = _fetcher(mirror.url, deadline=30.0)
    result: list[bytes] = []

    async def read() -> None:
        result.append(await f.fetch_block(bid, max_size=len(data)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await trio.sleep(5.0)
        assert not result
        await mirror.restart()
    assert result == [data]
    await f.aclose()


async def test_hub_that_never_returns_gives_unavailable_within_the_bound(
    mirror: FaultyMirror, blobs: dict[str, bytes], autojump_clock: trio.testing.MockClock
) -> None:
    bid, data = _mid(blobs)
    mirror.fail(block_path(bid), Fault.DIE, times=1)
    f = _fetcher(mirror.url, deadline=20.0)
    start = trio.current_time()
    with pytest.raises(Unavailable):
        await f.fetch_block(bid, max_size=len(data))
    # Not the 20 s deadline: the no-usable-mirror bound (docs/datapath.md).
    assert trio.current_time() - start <= 10.0
    await f.aclose()


async def test_deadline_caps_the_bound(
    mirror: FaultyMirror, blobs: dict[str, bytes], autojump_clock: trio.testing.MockClock
) -> None:
    bid, data = _mid(blobs)
    mirror.fail(None, Fault.STALL_HEAD)
    f = _fetcher(mirror.url, deadline=1.5)
    start = trio.current_time()
    with pytest.raises(Unavailable):
        await f.fetch_block(bid, max_size=len(data))
    assert 1.5 <= trio.current_time() - start < 1.6
    await f.aclose()


async def test_oversize_object_refused(
    mirror: FaultyMirror, blobs: dict[str, bytes], autojump_clock: trio.testing.MockClock
) -> None:
    bid, data = _mid(blobs)
    f = _fetcher(mirror.url, deadline=2.0)
    with pytest.raises(Unavailable):
        await f.fetch_block(bid, max_size=len(data) - 1)
    await f.aclose()


async def test_bad_id_is_our_error(mirror: FaultyMirror) -> None:
    f = _fetcher(mirror.url)
    with pytest.raises(LayoutError):  # block_path's check: a UsageError
        await f.fetch_block("../../etc/passwd", max_size=1)
    await f.aclose()


async def test_fetch_from_nginx(tmp_path: Path, data_dir: Path, blobs: dict[str, bytes]) -> None:
    with nginx(data_dir, tmp_path / "ng") as server:
        f = _fetcher(server.url)
        for bid, data in blobs.items():
            assert await f.fetch_block(bid, max_size=len(data)) == data
        await f.aclose()


def test_set_mirrors_keeps_what_it_knows() -> None:
    h = MirrorHealth(["a", "b"])
    h.failed("a", Health.STALL, 10.0)
    assert h.breaker("a").state is Circuit.OPEN
    h.set_mirrors(["c", "a"])
    # "a" keeps its open circuit and penalty; "c" starts closed; "b" is gone.
    assert h.mirrors == ("c", "a") and h.breaker("a").state is Circuit.OPEN
    assert h.breaker("c").state is Circuit.CLOSED and h.penalty("a", 10.0) == PENALTY[Health.STALL]
    assert h.order("0" * 64, 10.0) == ["c", "a"]
    for bad in ([], ["a", "a"]):
        with pytest.raises(FetchUsageError):
            h.set_mirrors(bad)


async def test_ask_shares_the_breaker_of_reads(mirror: FaultyMirror, data_dir: Path) -> None:
    (data_dir / "roots").mkdir()
    (data_dir / "roots" / "1.root").write_bytes(b"one")
    f = _fetcher(mirror.url)
    assert (await f.ask(mirror.url, "roots/1.root", max_size=10)).body == b"one"
    # A 404 is an answer: the mirror works, its circuit stays closed.
    with pytest.raises(HttpStatusError):
        await f.ask(mirror.url, "roots/2.root", max_size=10)
    assert (await f.ask(mirror.url, "roots/2.root", max_size=10, ok=(200, 404))).status == 404
    assert f.health.breaker(mirror.url).state is Circuit.CLOSED
    # A 5xx is a fault: the circuit opens, and the next ask sends nothing.
    mirror.fail("roots/1.root", Fault.ERROR_503, times=1)
    with pytest.raises(HttpStatusError):
        await f.ask(mirror.url, "roots/1.root", max_size=10)
    assert f.health.breaker(mirror.url).state is Circuit.OPEN
    asked = mirror.requests["roots/1.root"]
    with pytest.raises(CircuitOpen):
        await f.ask(mirror.url, "roots/1.root", max_size=10)
    assert mirror.requests["roots/1.root"] == asked
    with pytest.raises(FetchUsageError):
        await f.ask("http://127.0.0.1:9", "roots/1.root", max_size=10)
    await f.aclose()


def test_an_early_trial_goes_before_the_cool_down_one_at_a_time() -> None:
    h = MirrorHealth(["a"])
    h.failed("a", Health.ERROR, 10.0)
    assert h.breaker("a").admit(10.1) is None  # cooling down (1 s)
    assert h.breaker("a").admit(10.1, early=True) is Pass.TRIAL
    assert h.breaker("a").admit(10.2, early=True) is None  # the trial is out
    h.succeeded("a", 10.3, Pass.TRIAL)
    assert h.breaker("a").state is Circuit.CLOSED
