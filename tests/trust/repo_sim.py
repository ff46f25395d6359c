"""A repository simulator: real keys, real signatures, re-signs whatever it is told.

Attack tests build their hostile inputs with it the way an attacker (or a
compromised hub holding some keys) would: change a field and re-sign with the
keys they hold, replay an old document, sign for another channel, and so on.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Any

from nacl.signing import SigningKey

from zosnode.layout import object_id
from zosnode.trust.anchor import Anchor
from zosnode.trust.envelope import Envelope
from zosnode.trust.manifest import FlistPin, Manifest, ServiceSpec
from zosnode.trust.root import Root
from zosnode.trust.signing import (
    encode_envelope,
    encode_manifest,
    encode_root,
    key_id,
    make_anchor,
    make_root,
    with_signature,
)
from zosnode.trust.verifier import Verifier

NOW = 1_790_000_000
DAY = 86_400
BUILD_TIME = NOW - 30 * DAY


def key(label: str) -> SigningKey:
    """A deterministic key per label, so failures are reproducible."""
    return SigningKey(hashlib.sha256(label.encode()).digest())


def sign(kind: str, body: bytes, signers: Sequence[SigningKey]) -> bytes:
    env = Envelope(kind, body)
    for k in signers:
        env = with_signature(env, k)
    return encode_envelope(env)


def flist_bytes(name: str, version: int = 1) -> bytes:
    return f"flist {name} v{version}\n".encode() * 7


class RepoSim:
    def __init__(self, n: int = 3, threshold: int = 2, label: str = "gen1") -> None:
        self.keys = [key(f"{label}-{i}") for i in range(n)]
        self.root = make_root(1, NOW + 365 * DAY, threshold, [key_id(k) for k in self.keys])
        self.root_bytes = sign("root", encode_root(self.root), self.keys[:threshold])
        self.roots: dict[int, bytes] = {1: self.root_bytes}
        self.first_root_bytes = self.root_bytes

    @property
    def signers(self) -> list[SigningKey]:
        return self.keys[: self.root.threshold]

    def anchor(self, floor: int = 0, build_time: int = BUILD_TIME) -> Anchor:
        return make_anchor(self.first_root_bytes, floor, build_time)

    def verifier(self, floor: int = 0, max_rotations: int = 32) -> Verifier:
        return Verifier(self.anchor(floor), max_rotations=max_rotations)

    def manifest(self, version: int = 1, channel: str = "stable", **changes: Any) -> Manifest:
        pins = tuple(
            FlistPin(name, object_id(flist_bytes(name, version)),
                     len(flist_bytes(name, version)), f"/opt/{name}")
            for name in ("base", "app")
        )
        m = Manifest(
            channel=channel,
            version=version,
            issued_at=NOW - DAY,
            expires_at=NOW + 7 * DAY,
            min_agent_version="0.1.0",
            rollout_ppm=1_000_000,
            hubs=("http://127.0.0.1:8080",),
            mirrors=("http://127.0.0.1:8081",),
            flists=pins,
            services=(
                ServiceSpec("init", "base", ("/bin/setup",), oneshot=True),
                ServiceSpec("web", "app", ("/usr/bin/web", "--port", "80"),
                            env={"MODE": "prod"}, after=("init",), ready=("/usr/bin/check",)),
            ),
            metadata={"entrypoint": ["/usr/bin/web"], "notes": "release"},
        )
        return dataclasses.replace(m, **changes) if changes else m

    def signed_manifest(
        self, manifest: Manifest | None = None, signers: Sequence[SigningKey] | None = None
    ) -> bytes:
        m = manifest if manifest is not None else self.manifest()
        return sign("manifest", encode_manifest(m), self.signers if signers is None else signers)

    def rotate(
        self,
        new_keys: Sequence[SigningKey],
        threshold: int,
        *,
        old_signers: Sequence[SigningKey] | None = None,
        new_signers: Sequence[SigningKey] | None = None,
        version: int | None = None,
        manifest_floor: int = 0,
        expires_at: int = NOW + 365 * DAY,
    ) -> bytes:
        """Publish the next root; by default signed by threshold old and new keys."""
        old = self.root
        new = make_root(
            old.version + 1 if version is None else version, expires_at, threshold,
            [key_id(k) for k in new_keys], manifest_floor,
        )
        olds = list(self.signers if old_signers is None else old_signers)
        news = list(new_keys[:threshold] if new_signers is None else new_signers)
        signed = sign("root", encode_root(new), olds + [k for k in news if k not in olds])
        self.root, self.keys = new, list(new_keys)
        self.roots[new.version] = signed
        return signed


def root_of(data: bytes) -> Root:
    from zosnode.trust.envelope import decode
    from zosnode.trust.root import decode_body

    return decode_body(decode(data, max_size=1 << 20, kind="root").body)
