"""What the verifier remembers, and the staged-rollout rule."""

from __future__ import annotations

import pytest

from tests.trust.repo_sim import NOW, RepoSim
from zosnode.trust.errors import EquivocationError, RollbackError


def test_once_trusted_older_or_conflicting_manifests_are_refused() -> None:
    sim = RepoSim()
    hub = sim.verifier()
    for version in (5, 6):
        hub.verify_manifest(sim.signed_manifest(sim.manifest(version=version)),
                            channel="stable", now=NOW)
        # `version` is now the one remembered: one less is a rollback, a different
        # manifest of the same version equivocation.
        with pytest.raises(RollbackError):
            hub.verify_manifest(sim.signed_manifest(sim.manifest(version=version - 1)),
                                channel="stable", now=NOW)
        with pytest.raises(EquivocationError):
            hub.verify_manifest(sim.signed_manifest(sim.manifest(version=version,
                                                                 rollout_ppm=7)),
                                channel="stable", now=NOW)


def test_channels_are_tracked_apart() -> None:
    sim = RepoSim()
    v = sim.verifier()
    v.verify_manifest(sim.signed_manifest(sim.manifest(version=9)), channel="stable", now=NOW)
    got = v.verify_manifest(sim.signed_manifest(sim.manifest(version=2, channel="beta")),
                            channel="beta", now=NOW)
    assert got.manifest.version == 2
