"""Key rotation: a node holding only its compiled-in root follows the chain."""

from __future__ import annotations

import pytest

from tests.trust.repo_sim import NOW, RepoSim, key
from zosnode.trust.errors import RollbackError, ThresholdError, UnknownKeyError
from zosnode.trust.signing import key_id
from zosnode.trust.verifier import Verifier


def follow(v: Verifier, roots: dict[int, bytes], now: int = NOW) -> int:
    """What a node does: ask for N+1 until not found; return rotations followed."""
    refresh = v.refresh()
    while (wanted := refresh.wanted()) is not None and wanted in roots:
        refresh.received(roots[wanted])
    refresh.finish(now)
    return refresh.followed


def test_two_of_three_rotated_to_a_new_key_set() -> None:
    sim = RepoSim(3, 2)
    node = sim.verifier()  # holds only root v1
    new = [key(f"gen2-{i}") for i in range(3)]
    sim.rotate(new, 2, old_signers=[sim.keys[0], sim.keys[2]], new_signers=[new[1], new[2]])
    assert follow(node, sim.roots) == 1
    assert node.root.version == 2
    assert set(node.root.keys) == {key_id(k) for k in new}
    # The new keys sign releases now; the old ones no longer can.
    m = sim.manifest(version=2)
    assert node.verify_manifest(sim.signed_manifest(m), channel="stable", now=NOW).manifest == m
    old_keys = [key("gen1-0"), key("gen1-1")]
    old_signed = sim.signed_manifest(sim.manifest(version=3), signers=old_keys)
    with pytest.raises(UnknownKeyError):
        node.verify_manifest(old_signed, channel="stable", now=NOW)


def test_a_chain_of_rotations_is_followed_in_order() -> None:
    sim = RepoSim(3, 2)
    for gen in range(2, 6):
        sim.rotate([key(f"gen{gen}-{i}") for i in range(gen)], gen - 1)
    node = sim.verifier()
    assert follow(node, sim.roots) == 4
    assert node.root.version == 5 and node.root.threshold == 4


def test_rotation_signed_only_by_new_keys_is_refused_and_changes_nothing() -> None:
    sim = RepoSim(3, 2)
    node = sim.verifier()
    new = [key(f"gen2-{i}") for i in range(3)]
    sim.rotate(new, 2, old_signers=[])
    with pytest.raises(UnknownKeyError):
        follow(node, sim.roots)
    assert node.root.version == 1


def test_rotation_by_fewer_than_the_old_threshold_is_refused() -> None:
    sim = RepoSim(3, 2)
    node = sim.verifier()
    sim.rotate([key(f"gen2-{i}") for i in range(3)], 2, old_signers=[sim.keys[1]])
    with pytest.raises(ThresholdError, match="1 valid signature.*trusted root v1, 2 required"):
        follow(node, sim.roots)


def test_refresh_follows_at_most_the_cap_then_resumes() -> None:
    sim = RepoSim(3, 2)
    for _ in range(5):
        sim.rotate(sim.keys, 2)
    node = sim.verifier(max_rotations=3)
    assert follow(node, sim.roots) == 3
    assert node.root.version == 4
    assert follow(node, sim.roots) == 2
    assert node.root.version == 6


def test_fast_forward_by_compromised_keys_is_undone_by_rotation() -> None:
    sim = RepoSim(3, 2)
    node = sim.verifier()
    node.verify_manifest(sim.signed_manifest(sim.manifest(version=5)), channel="stable", now=NOW)
    # A threshold of keys leaks; the attacker pushes a huge version.
    evil = sim.signed_manifest(sim.manifest(version=10**9))
    node.verify_manifest(evil, channel="stable", now=NOW)
    with pytest.raises(RollbackError):
        node.verify_manifest(sim.signed_manifest(sim.manifest(version=6)), channel="stable",
                             now=NOW)
    # Recovery: rotate away from the leaked keys with a floor at the next release.
    sim.rotate([key(f"gen2-{i}") for i in range(3)], 2, manifest_floor=6)
    follow(node, sim.roots)
    got = node.verify_manifest(sim.signed_manifest(sim.manifest(version=6)), channel="stable",
                               now=NOW)
    assert got.manifest.version == 6
    # The floor still stops a replay of anything older.
    with pytest.raises(RollbackError, match="floor 6"):
        fresh = sim.verifier()
        follow(fresh, sim.roots)
        fresh.verify_manifest(sim.signed_manifest(sim.manifest(version=5)), channel="stable",
                              now=NOW)


def test_rotating_keys_without_raising_the_floor_keeps_rollback_protection() -> None:
    sim = RepoSim(3, 2)
    node = sim.verifier()
    node.verify_manifest(sim.signed_manifest(sim.manifest(version=5)), channel="stable", now=NOW)
    old_v4 = sim.signed_manifest(sim.manifest(version=4))
    # Replace one key; two old keys remain trusted and signed v4 long ago.
    sim.rotate([sim.keys[0], sim.keys[1], key("gen2-new")], 2)
    follow(node, sim.roots)
    with pytest.raises(RollbackError, match="older than v5"):
        node.verify_manifest(old_v4, channel="stable", now=NOW)
