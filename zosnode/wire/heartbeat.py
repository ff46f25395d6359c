"""The signed node heartbeat: canonical CBOR {"body": the fields' canonical CBOR, "sig": the node's
ed25519 signature over `DOMAIN + body`}. The node id IS the hex public key (no enrolment); the hub
(`wire.heartbeat_verify`: each field, the size, the signature) refuses replays by `sent_at`. Fields
after `boot_timings_ms` came later, left out at their default: old hubs and nodes agree."""

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

import nacl.signing

from zosnode import canonical

DOMAIN = b"zosnode-heartbeat-v1\x00"


@dataclass(frozen=True)
class ServiceState:
    name: str
    state: str  # e.g. "running", "starting", "backoff", "stopped", "failed", "done"
    restarts: int = 0


@dataclass(frozen=True)
class DiskReport:
    name: str  # the kernel's name, e.g. "vda"
    size_bytes: int
    model: str
    role: str  # "cache" (the node writes it) or "untouched"


@dataclass(frozen=True)
class HardwareReport:
    cpus: int
    memory_bytes: int
    disks: tuple[DiskReport, ...] = ()


@dataclass(frozen=True)
class CacheReport:
    place: str  # "disk" or "ram" (no usable cache disk, or it failed)
    size_bytes: int  # the bound
    used_bytes: int
    hits: int
    misses: int
    refetched: int  # blocks read from the disk that failed their id check
    note: str = ""  # why it is in RAM, when it fell back


@dataclass(frozen=True)
class RefusalReport:
    kind: str  # "dhcp", "manifest" or "mirror": the last of each the node refused
    reason: str
    at: int  # unix seconds


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
    audit: tuple[str, ...] = ()  # the listening-socket audit's findings (empty: none listens)
    failed_release: int | None = None
    boot_timings_ms: Mapping[str, int] = field(default_factory=dict)
    secure_boot: str = "unknown"  # this and the fields below: optional on the wire
    identity_source: str = "unknown"  # where the node key came from: tpm, disk, ram
    hardware: HardwareReport | None = None
    cache: CacheReport | None = None
    refusals: tuple[RefusalReport, ...] = ()  # the last of each kind

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in _plain(self).items() if k not in _OPTIONAL or v != _OPTIONAL[k]}


# The fields an old hub does not know, and the default that leaves each out.
_OPTIONAL: dict[str, object] = {"secure_boot": "unknown", "identity_source": "unknown",
                                "hardware": None, "cache": None, "refusals": []}


def _plain(value: Any) -> Any:
    if is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return dict(value) if isinstance(value, Mapping) else value


def encode_signed(hb: Heartbeat, signing_key: nacl.signing.SigningKey) -> bytes:
    body = canonical.dumps(hb.to_dict())
    return canonical.dumps({"body": body, "sig": signing_key.sign(DOMAIN + body).signature})
