"""Staged rollout: whether a node is in a release's fraction (pure, deterministic).

A node is in the rollout when a hash of (channel, version, node id) lands
below `rollout_ppm` parts per million. Hashing the version too means each
release picks a different subset, so the same nodes are not always first;
raising `rollout_ppm` for the same version only ever adds nodes.
"""

from __future__ import annotations

import hashlib

from zosnode.trust.manifest import PPM, Manifest


def rollout_point(channel: str, version: int, node_id: str) -> int:
    """The node's position in 0..PPM-1 for this release."""
    h = hashlib.blake2b(f"{channel}\x00{version}\x00{node_id}".encode(), digest_size=8)
    return int.from_bytes(h.digest(), "big") % PPM


def in_rollout(manifest: Manifest, node_id: str) -> bool:
    return rollout_point(manifest.channel, manifest.version, node_id) < manifest.rollout_ppm
