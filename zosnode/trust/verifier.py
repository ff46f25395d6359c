"""The one verifier of roots and manifests, node and hub alike (sans-IO): bytes and now
(`effective_now(clock, anchor)`) in, a parsed document or a typed `Refused` out; it keeps the
current root and each channel's highest. Rules (root refresh as TUF 5.3): docs/threat-model.md."""

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from zosnode.trust import envelope, errors
from zosnode.trust.errors import TrustUsageError
from zosnode.trust.manifest import MAX_MANIFEST_BYTES, Manifest, agent_version_tuple
from zosnode.trust.manifest import decode_body as decode_manifest_body
from zosnode.trust.root import MAX_ROOT_BYTES, Root
from zosnode.trust.root import decode_body as decode_root_body

if TYPE_CHECKING:
    # A type only: the anchor module also reads files, which this pure core never does.
    from zosnode.trust.anchor import Anchor

MAX_ROTATIONS = 32


def effective_now(clock: int, anchor: "Anchor") -> int:
    """The time to verify at: the clock, but never before the artifact was built."""
    return max(clock, anchor.build_time)


@dataclass(frozen=True)
class Verified:
    manifest: Manifest
    data: bytes
    signers: frozenset[str]


class Verifier:
    def __init__(self, anchor: "Anchor", *, max_rotations: int = MAX_ROTATIONS) -> None:
        if max_rotations < 1:
            raise TrustUsageError("max_rotations must be at least 1")
        self.root, self.root_bytes = anchor.root, anchor.root_bytes
        self._floor = max(anchor.floor, anchor.root.manifest_floor)
        # Per channel: the highest trusted version, its body's digest (equivocation is by body).
        self._seen: dict[str, tuple[int, bytes]] = {}
        self.max_rotations = max_rotations

    def refresh(self) -> "RootRefresh":
        return RootRefresh(self)

    def accept_root(self, data: bytes) -> Root:
        old = self.root
        env = envelope.decode(data, max_size=MAX_ROOT_BYTES, kind="root")
        # The old keys vouch for the new root before we read a field of it.
        envelope.require_threshold(env, old.keys, old.threshold, f"trusted root v{old.version}")
        new = decode_root_body(env.body)
        if new.version <= old.version:
            raise errors.RollbackError(f"root v{new.version} is not newer than trusted "
                                       f"v{old.version}")
        if new.version != old.version + 1:
            raise errors.RotationError(f"root v{new.version} skips versions after trusted "
                                       f"v{old.version}")
        envelope.require_threshold(env, new.keys, new.threshold, f"root v{new.version}'s own keys")
        if set(new.keys) != set(old.keys) and new.manifest_floor > old.manifest_floor:
            # New keys and a raised floor: versions seen under the old keys, maybe pushed up by
            # compromised keys (fast-forward), yield to it; else kept: no rollback through rotation.
            self._seen.clear()
        self._floor = max(self._floor, new.manifest_floor)
        self.root, self.root_bytes = new, data
        return new

    def check_root_fresh(self, now: int) -> None:
        if now >= self.root.expires_at:
            raise errors.ExpiredError(f"trusted root v{self.root.version} expired at "
                                      f"{self.root.expires_at} (now {now}); no newer root")

    def verify_manifest(self, data: bytes, *, channel: str, now: int,
                        agent_version: str | None = None) -> Verified:
        """Verify a signed manifest for `channel` (signatures before its body is read) and
        remember it as trusted; the minimum agent version only when `agent_version` is given."""
        root = self.root
        env = envelope.decode(data, max_size=MAX_MANIFEST_BYTES, kind="manifest")
        signers = envelope.require_threshold(env, root.keys, root.threshold,
                                             f"trusted root v{root.version}")
        manifest = decode_manifest_body(env.body)
        if manifest.channel != channel:
            raise errors.WrongChannelError(f"manifest is for channel {manifest.channel!r}, "
                                           f"not {channel!r}")
        if manifest.version < self._floor:
            raise errors.RollbackError(f"manifest v{manifest.version} is below the version "
                                       f"floor {self._floor}")
        digest = hashlib.blake2b(env.body, digest_size=32).digest()
        seen, seen_digest = self._seen.get(channel, (0, digest))  # versions start at 1
        if manifest.version < seen:
            raise errors.RollbackError(f"manifest v{manifest.version} is older than "
                                       f"v{seen} already trusted on {channel!r}")
        if manifest.version == seen and digest != seen_digest:
            raise errors.EquivocationError(f"manifest v{manifest.version} on {channel!r} "
                                           f"differs from the v{seen} already trusted")
        if now >= manifest.expires_at:
            raise errors.ExpiredError(f"manifest v{manifest.version} expired at "
                                      f"{manifest.expires_at} (now {now})")
        self.check_root_fresh(now)
        need = agent_version_tuple(manifest.min_agent_version)
        if agent_version is not None and agent_version_tuple(agent_version) < need:
            raise errors.AgentTooOldError(f"manifest v{manifest.version} needs agent "
                                          f"{manifest.min_agent_version}, this is {agent_version}")
        self._seen[channel] = (manifest.version, digest)
        return Verified(manifest, data, signers)


class RootRefresh:
    """One root refresh, sans-IO: while `wanted()` names a version, pass the hub's
    `roots/<version>.root` to `received` (stop at a 404), then `finish(now)`."""

    def __init__(self, verifier: Verifier) -> None:
        self._verifier = verifier
        self.followed = 0

    def wanted(self) -> int | None:
        if self.followed >= self._verifier.max_rotations:
            return None
        return self._verifier.root.version + 1

    def received(self, data: bytes) -> Root:
        if self.wanted() is None:
            raise TrustUsageError(f"already followed {self.followed} rotations, the cap")
        root = self._verifier.accept_root(data)
        self.followed += 1
        return root

    def finish(self, now: int) -> Root:
        self._verifier.check_root_fresh(now)
        return self._verifier.root
