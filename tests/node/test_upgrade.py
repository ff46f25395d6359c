"""The upgrade policy: ordering, rollout, rollback memory."""

from __future__ import annotations

import pytest

from zosnode.agent.upgrade import (
    Ignore,
    IgnoreWhy,
    PollSchedule,
    Rollback,
    Stage,
    UpgradePolicy,
    UpgradeUsageError,
    in_rollout,
    rollout_slot,
)
from zosnode.trust.manifest import PPM, FlistPin, Manifest, ServiceSpec

NODE = "ab" * 32


def manifest(version: int, ppm: int = PPM, channel: str = "stable") -> Manifest:
    return Manifest(
        channel=channel,
        version=version,
        issued_at=1,
        expires_at=2**40,
        rollout_ppm=ppm,
        flists=(FlistPin("base", "0" * 64, 10, "/opt/base"),),
        services=(ServiceSpec("svc", "base", ("bin/svc",)),),
    )


def booted(version: int = 5) -> UpgradePolicy:
    p = UpgradePolicy(NODE)
    stage = p.offer(manifest(version))
    assert isinstance(stage, Stage)
    p.staged_ready()
    assert p.current == version
    return p


def test_boot_takes_the_first_release_whatever_its_rollout() -> None:
    p = UpgradePolicy(NODE)
    assert isinstance(p.offer(manifest(3, ppm=0)), Stage)


def test_newer_release_is_staged_then_switched() -> None:
    p = booted(5)
    stage = p.offer(manifest(6))
    assert isinstance(stage, Stage) and stage.manifest.version == 6
    assert p.offer(manifest(7)) == Ignore(7, IgnoreWhy.BUSY)
    p.staged_ready()
    assert p.current == 6


def test_same_and_older_are_ignored() -> None:
    p = booted(5)
    assert p.offer(manifest(5)) == Ignore(5, IgnoreWhy.SAME)
    assert p.offer(manifest(4)) == Ignore(4, IgnoreWhy.OLDER)


def test_failed_readiness_rolls_back_and_is_not_retried_until_a_newer_one() -> None:
    p = booted(5)
    assert isinstance(p.offer(manifest(6)), Stage)
    assert p.staged_failed() == Rollback(6, 5)
    assert p.current == 5
    assert p.offer(manifest(6)) == Ignore(6, IgnoreWhy.FAILED_BEFORE)
    assert isinstance(p.offer(manifest(7)), Stage)


def test_rollout_fraction() -> None:
    p = booted(5)
    assert p.offer(manifest(6, ppm=0)) == Ignore(6, IgnoreWhy.OUTSIDE_ROLLOUT)
    # The slot is stable and roughly uniform: about 30 % of nodes take a 30 % rollout.
    nodes = [f"{i:064x}" for i in range(4000)]
    share = sum(in_rollout(n, manifest(6, ppm=300_000)) for n in nodes) / len(nodes)
    assert 0.27 < share < 0.33
    assert rollout_slot(NODE, "stable", 6) == rollout_slot(NODE, "stable", 6)
    inside = next(n for n in nodes if in_rollout(n, manifest(6, ppm=10_000)))
    q = UpgradePolicy(inside)
    q.offer(manifest(5))
    q.staged_ready()
    assert isinstance(q.offer(manifest(6, ppm=10_000)), Stage)
    # Widening the rollout never drops a node that was in.
    assert all(
        in_rollout(n, manifest(6, ppm=500_000))
        for n in nodes if in_rollout(n, manifest(6, ppm=100_000))
    )


def test_poll_schedule_jitter_bounds() -> None:
    s = PollSchedule(interval_ms=10_000, jitter_ms=2_000)
    assert s.next_poll(0, 0.0) == 8_000
    assert s.next_poll(0, 0.999999) == 11_999
    assert s.next_poll(500, 0.5) == 10_500
    with pytest.raises(UpgradeUsageError):
        s.next_poll(0, 1.0)
    with pytest.raises(UpgradeUsageError):
        PollSchedule(interval_ms=1000, jitter_ms=1000)


def test_usage_errors() -> None:
    p = booted(5)
    with pytest.raises(UpgradeUsageError):
        p.staged_ready()
    with pytest.raises(UpgradeUsageError):
        p.staged_failed()


def test_abandoned_stage_leaves_no_verdict() -> None:
    p = booted(5)
    assert isinstance(p.offer(manifest(6)), Stage)
    assert p.abandon().version == 6
    assert p.current == 5
    assert isinstance(p.offer(manifest(6)), Stage)  # no verdict kept, not BUSY
    with pytest.raises(UpgradeUsageError):
        UpgradePolicy(NODE).abandon()
