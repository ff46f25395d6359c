"""What the verifier remembers, and the staged-rollout rule."""

from __future__ import annotations

import pytest

from tests.trust.repo_sim import NOW, RepoSim
from zosnode.trust.errors import EquivocationError, RollbackError
from zosnode.trust.verifier import Seen


def test_hub_restores_its_current_manifest_then_refuses_older_or_conflicting() -> None:
    sim = RepoSim()
    # The hub verified v5 long ago; it may have expired since. It restores
    # what it recorded rather than re-verifying it.
    first = sim.verifier().verify_manifest(
        sim.signed_manifest(sim.manifest(version=5)), channel="stable", now=NOW
    )
    hub = sim.verifier()
    hub.remember("stable", Seen.of(first))
    hub.remember("stable", Seen(1, b"stale"))  # a stale record cannot lower it
    with pytest.raises(RollbackError):
        hub.verify_manifest(sim.signed_manifest(sim.manifest(version=4)), channel="stable",
                            now=NOW)
    with pytest.raises(EquivocationError):
        hub.verify_manifest(sim.signed_manifest(sim.manifest(version=5, rollout_ppm=7)),
                            channel="stable", now=NOW)
    got = hub.verify_manifest(sim.signed_manifest(sim.manifest(version=6)), channel="stable",
                              now=NOW)
    assert hub.seen("stable") == Seen.of(got)


def test_channels_are_tracked_apart() -> None:
    sim = RepoSim()
    v = sim.verifier()
    v.verify_manifest(sim.signed_manifest(sim.manifest(version=9)), channel="stable", now=NOW)
    got = v.verify_manifest(sim.signed_manifest(sim.manifest(version=2, channel="beta")),
                            channel="beta", now=NOW)
    assert got.manifest.version == 2
