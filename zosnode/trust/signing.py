"""The publisher's half of the trust layer: documents encoded and signed.

A node only decodes and verifies (`manifest`, `root`, `envelope`, `anchor`,
`verifier`); building and signing those documents is for the release tools
and tests, so it lives here, out of the node's trusted code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nacl.signing import SigningKey, VerifyKey

from zosnode import canonical
from zosnode.trust.anchor import SPEC as ANCHOR_SPEC
from zosnode.trust.anchor import Anchor, decode, verify_self_signed
from zosnode.trust.envelope import Envelope, Signature, signed_message
from zosnode.trust.errors import TrustUsageError
from zosnode.trust.manifest import SPEC as MANIFEST_SPEC
from zosnode.trust.manifest import Manifest, ServiceSpec
from zosnode.trust.root import SPEC as ROOT_SPEC
from zosnode.trust.root import Root


def key_id(key: SigningKey | VerifyKey) -> str:
    verify = key.verify_key if isinstance(key, SigningKey) else key
    return bytes(verify).hex()


def make_root(
    version: int, expires_at: int, threshold: int, key_ids: list[str], manifest_floor: int = 0
) -> Root:
    """A root from key ids in any order (they are sorted; duplicates refused)."""
    if len(set(key_ids)) != len(key_ids):
        raise TrustUsageError("the same key is listed twice")
    return Root(version, expires_at, threshold, tuple(sorted(key_ids)), manifest_floor)


def encode_root(root: Root) -> bytes:
    return canonical.dumps(
        {
            "spec": ROOT_SPEC,
            "version": root.version,
            "expires_at": root.expires_at,
            "threshold": root.threshold,
            "keys": list(root.keys),
            "manifest_floor": root.manifest_floor,
        }
    )


def encode_manifest(m: Manifest) -> bytes:
    return canonical.dumps(
        {
            "spec": MANIFEST_SPEC,
            "channel": m.channel,
            "version": m.version,
            "issued_at": m.issued_at,
            "expires_at": m.expires_at,
            "min_agent_version": m.min_agent_version,
            "rollout_ppm": m.rollout_ppm,
            "hubs": list(m.hubs),
            "mirrors": list(m.mirrors),
            "flists": [
                {"name": p.name, "id": p.id, "size": p.size, "mount": p.mount}
                for p in m.flists
            ],
            "services": [_service_map(s) for s in m.services],
            "metadata": dict(m.metadata),
        }
    )


def _service_map(s: ServiceSpec) -> dict[str, Any]:
    return {
        "name": s.name,
        "flist": s.flist,
        "argv": list(s.argv),
        "env": dict(s.env),
        "after": list(s.after),
        "oneshot": s.oneshot,
        "ready": None if s.ready is None else list(s.ready),
        "restart_initial_ms": s.restart_initial_ms,
        "restart_max_ms": s.restart_max_ms,
        "stop_signal": s.stop_signal,
        "stop_timeout_ms": s.stop_timeout_ms,
    }


def encode_envelope(env: Envelope) -> bytes:
    return canonical.dumps(
        {
            "kind": env.kind,
            "signed": env.body,
            "signatures": [{"keyid": s.keyid, "sig": s.sig} for s in env.signatures],
        }
    )


def sign(key: SigningKey, kind: str, body: bytes) -> bytes:
    return bytes(key.sign(signed_message(kind, body)).signature)


def with_signature(env: Envelope, key: SigningKey) -> Envelope:
    """`env` plus `key`'s signature (replacing an older one by it)."""
    kid = key_id(key)
    fresh = Signature(kid, sign(key, env.kind, env.body))
    others = [s for s in env.signatures if s.keyid != kid]
    return Envelope(env.kind, env.body, tuple(sorted([*others, fresh], key=_by_id)))


def _by_id(sig: Signature) -> str:
    return sig.keyid


def make_anchor(root_bytes: bytes, floor: int, build_time: int) -> Anchor:
    """Build an anchor from a signed root file; refuses a root that does not verify."""
    if floor < 0 or build_time < 0:
        raise TrustUsageError("floor and build time must not be negative")
    return Anchor(root_bytes, verify_self_signed(root_bytes), floor, build_time)


def encode_anchor(anchor: Anchor) -> bytes:
    return canonical.dumps(
        {"spec": ANCHOR_SPEC, "root": anchor.root_bytes, "floor": anchor.floor,
         "build_time": anchor.build_time}
    )


def load_anchor(path: Path) -> Anchor:
    """An anchor from a file (tests, workstations). Missing file: TrustUsageError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TrustUsageError(f"{path}: {exc.strerror or exc}") from None
    return decode(data)
