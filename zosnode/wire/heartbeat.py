"""The signed node heartbeat: what a node tells the hub about itself.

On the wire: canonical CBOR `{"body": <bytes>, "sig": <64 bytes>}` where body
is the canonical CBOR of the fields and sig is the node's ed25519 signature
over `DOMAIN + body`. The node id IS the hex public key, so the hub needs no
enrolment: a heartbeat proves it came from the holder of that id, and
`sent_at` lets the hub refuse one older than the last it kept (replays).
The hub decodes and checks it with `zosnode.wire.heartbeat_verify`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import nacl.signing

from zosnode import canonical
from zosnode.layout import is_hex_id
from zosnode.wire.errors import WireUsageError

DOMAIN = b"zosnode-heartbeat-v1\x00"
MAX_BYTES = 64 * 1024
_MAX_TEXT = 256
_MAX_ITEMS = 256


def _text(name: str, value: object, max_len: int = _MAX_TEXT) -> str:
    if not isinstance(value, str) or len(value) > max_len:
        raise WireUsageError(f"{name} must be a string of at most {max_len} characters")
    return value


def _count(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise WireUsageError(f"{name} must be a non-negative integer")
    return value


@dataclass(frozen=True)
class ServiceState:
    name: str
    state: str  # e.g. "running", "starting", "backoff", "stopped", "failed", "done"
    restarts: int = 0

    def __post_init__(self) -> None:
        _text("service name", self.name)
        _text("service state", self.state, 32)
        _count("restarts", self.restarts)


@dataclass(frozen=True)
class Heartbeat:
    node_id: str  # hex ed25519 public key
    farm: str
    channel: str
    release: int  # the manifest version running; 0 before the first
    agent_version: str
    sent_at: int  # unix seconds, node clock
    uptime_s: int
    services: tuple[ServiceState, ...] = ()
    addresses: tuple[str, ...] = ()
    # Findings of the node's listening-socket audit (empty = nothing listens).
    audit: tuple[str, ...] = ()
    failed_release: int | None = None
    boot_timings_ms: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not is_hex_id(self.node_id):
            raise WireUsageError("node_id must be 64 lowercase hex digits")
        for name in ("farm", "channel", "agent_version"):
            _text(name, getattr(self, name))
        for name in ("release", "sent_at", "uptime_s"):
            _count(name, getattr(self, name))
        if self.failed_release is not None:
            _count("failed_release", self.failed_release)
        for name in ("services", "addresses", "audit", "boot_timings_ms"):
            if len(getattr(self, name)) > _MAX_ITEMS:
                raise WireUsageError(f"more than {_MAX_ITEMS} {name}")
        if not all(isinstance(s, ServiceState) for s in self.services):
            raise WireUsageError("services must be ServiceState values")
        for a in (*self.addresses, *self.audit):
            _text("address or audit finding", a)
        timings = dict(self.boot_timings_ms)
        for k, v in timings.items():
            _text("timing name", k, 64)
            _count(f"timing {k}", v)
        object.__setattr__(self, "boot_timings_ms", MappingProxyType(timings))
        object.__setattr__(self, "services", tuple(self.services))
        object.__setattr__(self, "addresses", tuple(self.addresses))
        object.__setattr__(self, "audit", tuple(self.audit))

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "farm": self.farm,
            "channel": self.channel,
            "release": self.release,
            "agent_version": self.agent_version,
            "sent_at": self.sent_at,
            "uptime_s": self.uptime_s,
            "services": [
                {"name": s.name, "state": s.state, "restarts": s.restarts}
                for s in self.services
            ],
            "addresses": list(self.addresses),
            "audit": list(self.audit),
            "failed_release": self.failed_release,
            "boot_timings_ms": dict(self.boot_timings_ms),
        }


def encode_signed(hb: Heartbeat, signing_key: nacl.signing.SigningKey) -> bytes:
    if signing_key.verify_key.encode().hex() != hb.node_id:
        raise WireUsageError("the signing key is not the heartbeat's node id")
    body = canonical.dumps(hb.to_dict())
    sig = signing_key.sign(DOMAIN + body).signature
    data = canonical.dumps({"body": body, "sig": sig})
    if len(data) > MAX_BYTES:
        raise WireUsageError(f"heartbeat is {len(data)} bytes, over {MAX_BYTES}")
    return data
