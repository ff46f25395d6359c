"""The signed node heartbeat: canonical CBOR `{"body": <bytes>, "sig": <64 bytes>}`,
body the canonical CBOR of the fields, sig the node's ed25519 signature over
`DOMAIN + body`. The node id IS the hex public key, so the hub needs no enrolment,
and `sent_at` lets it refuse one older than the last it kept (replays). The hub's
half is `zosnode.wire.heartbeat_verify`. The fields after `boot_timings_ms` came
later: `to_dict` leaves each out while it holds its default, so old hubs and
nodes still understand each other.
"""

from __future__ import annotations

import dataclasses
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


def _text(name: str, value: object, max_len: int = _MAX_TEXT) -> None:
    if not isinstance(value, str) or len(value) > max_len:
        raise WireUsageError(f"{name} must be a string of at most {max_len} characters")


def _count(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise WireUsageError(f"{name} must be a non-negative integer")


def _one_of(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise WireUsageError(f"{name} must be one of {', '.join(allowed)}")


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
class DiskReport:
    name: str  # the kernel's name, e.g. "vda"
    size_bytes: int
    model: str
    role: str  # "cache" (the node writes it) or "untouched"

    def __post_init__(self) -> None:
        _text("disk name", self.name, 32)
        _count("disk size", self.size_bytes)
        _text("disk model", self.model, 64)
        _one_of("disk role", self.role, ("cache", "untouched"))


@dataclass(frozen=True)
class HardwareReport:
    cpus: int
    memory_bytes: int
    disks: tuple[DiskReport, ...] = ()

    def __post_init__(self) -> None:
        _count("cpus", self.cpus)
        _count("memory", self.memory_bytes)
        if len(self.disks) > 64 or not all(isinstance(d, DiskReport) for d in self.disks):
            raise WireUsageError("disks must be at most 64 DiskReport values")
        object.__setattr__(self, "disks", tuple(self.disks))


@dataclass(frozen=True)
class CacheReport:
    """The block cache: where it lives, its bound and use, and what it caught."""

    place: str  # "disk" or "ram" (no usable cache disk, or it failed)
    size_bytes: int  # the bound
    used_bytes: int
    hits: int
    misses: int
    refetched: int  # blocks read from the disk that failed their id check
    note: str = ""  # why it is in RAM, when it fell back

    def __post_init__(self) -> None:
        _one_of("cache place", self.place, ("disk", "ram"))
        for name in ("size_bytes", "used_bytes", "hits", "misses", "refetched"):
            _count(f"cache {name}", getattr(self, name))
        _text("cache note", self.note)


@dataclass(frozen=True)
class RefusalReport:
    """The last thing of one kind the node refused, why, and when (unix seconds)."""

    kind: str
    reason: str
    at: int

    def __post_init__(self) -> None:
        _one_of("refusal kind", self.kind, ("dhcp", "manifest", "mirror"))
        _text("refusal reason", self.reason)
        _count("refusal time", self.at)


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
    # Optional on the wire (see the module docstring).
    secure_boot: str = "unknown"
    identity_source: str = "unknown"  # where the node key came from: tpm, disk, ram
    hardware: HardwareReport | None = None
    cache: CacheReport | None = None
    refusals: tuple[RefusalReport, ...] = ()  # the last of each kind

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
        _text("secure_boot", self.secure_boot, 32)
        _one_of("identity_source", self.identity_source, ("tpm", "disk", "ram", "unknown"))
        if not (isinstance(self.hardware, HardwareReport | None)
                and isinstance(self.cache, CacheReport | None)):
            raise WireUsageError("hardware and cache must be a HardwareReport and a CacheReport")
        kinds = [r.kind for r in self.refusals if isinstance(r, RefusalReport)]
        if len(kinds) != len(self.refusals) or len(set(kinds)) != len(kinds):
            raise WireUsageError("refusals must be RefusalReport values, one per kind")
        for name in ("refusals", "services", "addresses", "audit"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = _plain(self)  # absent while at the default: see the docstring
        return {k: v for k, v in out.items() if k not in _OPTIONAL or v != _OPTIONAL[k]}


# The fields an old hub does not know, and the default that leaves each out.
_OPTIONAL: dict[str, object] = {"secure_boot": "unknown", "identity_source": "unknown",
                                "hardware": None, "cache": None, "refusals": []}


def _plain(value: Any) -> Any:
    """A report as data for CBOR: a dataclass as the map of its fields, tuples as arrays."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return dict(value)
    return value


def encode_signed(hb: Heartbeat, signing_key: nacl.signing.SigningKey) -> bytes:
    if signing_key.verify_key.encode().hex() != hb.node_id:
        raise WireUsageError("the signing key is not the heartbeat's node id")
    body = canonical.dumps(hb.to_dict())
    sig = signing_key.sign(DOMAIN + body).signature
    data = canonical.dumps({"body": body, "sig": sig})
    if len(data) > MAX_BYTES:
        raise WireUsageError(f"heartbeat is {len(data)} bytes, over {MAX_BYTES}")
    return data
