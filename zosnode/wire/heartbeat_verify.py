"""The hub's side of the heartbeat: decode one, check every field and the signature.

A node only encodes heartbeats (`zosnode.wire.heartbeat`); this half runs on
the hub, so the node's trusted code does not carry it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import nacl.exceptions
import nacl.signing

from zosnode import canonical
from zosnode.layout import is_hex_id
from zosnode.wire.errors import WireRefused, WireUsageError
from zosnode.wire.heartbeat import (
    DOMAIN,
    CacheReport,
    DiskReport,
    HardwareReport,
    Heartbeat,
    RefusalReport,
    ServiceState,
)

# The hub's cap: the optional reports at their maximum fit (a test); 256 addresses of 256
# characters would not: such a heartbeat is refused (the node says "heartbeat not accepted").
MAX_BYTES = 64 * 1024
_MAX_TEXT = 256
_MAX_ITEMS = 256
_FIELDS = {
    "node_id", "farm", "channel", "release", "agent_version", "sent_at",
    "uptime_s", "services", "addresses", "audit", "failed_release",
    "boot_timings_ms",
}
# Added later: absent means the default (an older node, or nothing to say).
_OPTIONAL = {"secure_boot", "identity_source", "hardware", "cache", "refusals"}
_DISK = {"name", "size_bytes", "model", "role"}
_HARDWARE = {"cpus", "memory_bytes", "disks"}
_CACHE = {"place", "size_bytes", "used_bytes", "hits", "misses", "refetched", "note"}
_REFUSAL = {"kind", "reason", "at"}


def _text(name: str, value: object, max_len: int = _MAX_TEXT) -> None:
    if not isinstance(value, str) or len(value) > max_len:
        raise WireUsageError(f"{name} must be a string of at most {max_len} characters")


def _count(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise WireUsageError(f"{name} must be a non-negative integer")


def _one_of(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise WireUsageError(f"{name} must be one of {', '.join(allowed)}")


def _check_reports(hb: Heartbeat) -> None:
    for s in hb.services:
        _text("service name", s.name)
        _text("service state", s.state, 32)
        _count("restarts", s.restarts)
    if hb.hardware is not None:
        _count("cpus", hb.hardware.cpus)
        _count("memory", hb.hardware.memory_bytes)
        if len(hb.hardware.disks) > 64:
            raise WireUsageError("at most 64 disks")
        for disk in hb.hardware.disks:
            _text("disk name", disk.name, 32)
            _count("disk size", disk.size_bytes)
            _text("disk model", disk.model, 64)
            _one_of("disk role", disk.role, ("cache", "untouched"))
    if hb.cache is not None:
        _one_of("cache place", hb.cache.place, ("disk", "ram"))
        for name in ("size_bytes", "used_bytes", "hits", "misses", "refetched"):
            _count(f"cache {name}", getattr(hb.cache, name))
        _text("cache note", hb.cache.note)
    for r in hb.refusals:
        _one_of("refusal kind", r.kind, ("dhcp", "manifest", "mirror"))
        _text("refusal reason", r.reason)
        _count("refusal time", r.at)
    if len({r.kind for r in hb.refusals}) != len(hb.refusals):
        raise WireUsageError("one refusal per kind")


def _check(hb: Heartbeat) -> None:
    """Every field within its bounds (the node builds its heartbeat unchecked)."""
    if not is_hex_id(hb.node_id):
        raise WireUsageError("node_id must be 64 lowercase hex digits")
    for name in ("farm", "channel", "agent_version"):
        _text(name, getattr(hb, name))
    for name in ("release", "sent_at", "uptime_s"):
        _count(name, getattr(hb, name))
    if hb.failed_release is not None:
        _count("failed_release", hb.failed_release)
    for name in ("services", "addresses", "audit", "boot_timings_ms"):
        if len(getattr(hb, name)) > _MAX_ITEMS:
            raise WireUsageError(f"more than {_MAX_ITEMS} {name}")
    for a in (*hb.addresses, *hb.audit):
        _text("address or audit finding", a)
    for k, v in hb.boot_timings_ms.items():
        _text("timing name", k, 64)
        _count(f"timing {k}", v)
    _text("secure_boot", hb.secure_boot, 32)
    _one_of("identity_source", hb.identity_source, ("tpm", "disk", "ram", "unknown"))
    _check_reports(hb)


def _shaped(name: str, value: object, keys: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != keys:
        raise WireUsageError(f"{name} must be a map of {', '.join(sorted(keys))}")
    return value


def _list(name: str, value: object) -> list[Any]:
    if not isinstance(value, list):
        raise WireUsageError(f"{name} must be a list")
    return value


def _hardware(value: object) -> HardwareReport:
    hw = _shaped("hardware", value, _HARDWARE)
    disks = tuple(DiskReport(**_shaped("disk", d, _DISK))
                  for d in _list("disks", hw["disks"]))
    return HardwareReport(cpus=hw["cpus"], memory_bytes=hw["memory_bytes"], disks=disks)


def from_dict(d: Mapping[str, Any]) -> Heartbeat:
    """The heartbeat whose `Heartbeat.to_dict` is `d`; WireUsageError unless exactly that shape."""
    if not _FIELDS <= set(d) <= _FIELDS | _OPTIONAL:
        # Keys may be integers too: name them by repr, never sort text with ints.
        odd = sorted(repr(k) for k in (set(d) - _FIELDS - _OPTIONAL) | (_FIELDS - set(d)))
        raise WireUsageError(f"fields differ from the heartbeat's: {', '.join(odd)}")
    services = d["services"]
    if not isinstance(services, list) or not all(
            isinstance(s, dict) and set(s) == {"name", "state", "restarts"}
            for s in services):
        raise WireUsageError("services must be a list of {name, state, restarts}")
    for name in ("addresses", "audit"):
        if not isinstance(d[name], list):
            raise WireUsageError(f"{name} must be a list")
    if not isinstance(d["boot_timings_ms"], dict):
        raise WireUsageError("boot_timings_ms must be a map")
    hb = Heartbeat(
        node_id=d["node_id"], farm=d["farm"], channel=d["channel"],
        release=d["release"], agent_version=d["agent_version"],
        sent_at=d["sent_at"], uptime_s=d["uptime_s"],
        services=tuple(ServiceState(s["name"], s["state"], s["restarts"])
                       for s in services),
        addresses=tuple(d["addresses"]), audit=tuple(d["audit"]),
        failed_release=d["failed_release"],
        boot_timings_ms=d["boot_timings_ms"],
        secure_boot=d.get("secure_boot", "unknown"),
        identity_source=d.get("identity_source", "unknown"),
        hardware=_hardware(d["hardware"]) if "hardware" in d else None,
        cache=CacheReport(**_shaped("cache", d["cache"], _CACHE)) if "cache" in d else None,
        refusals=tuple(RefusalReport(**_shaped("refusal", r, _REFUSAL))
                       for r in _list("refusals", d.get("refusals", []))),
    )
    _check(hb)
    if set(hb.to_dict()) != set(d):
        # One encoding per heartbeat: an optional field is absent, not its default.
        raise WireUsageError("an optional field holds its default value")
    return hb


def decode_verified(data: bytes) -> Heartbeat:
    """The heartbeat in `data`, if it is well formed and signed by its node id."""
    try:
        outer = canonical.loads(data, max_size=MAX_BYTES, max_depth=2)
    except canonical.CanonicalError as exc:
        raise WireRefused(f"heartbeat envelope: {exc}") from None
    if not isinstance(outer, dict) or set(outer) != {"body", "sig"} or not isinstance(
            outer["body"], bytes) or not isinstance(outer["sig"], bytes):
        raise WireRefused("heartbeat envelope must be {body: bytes, sig: bytes}")
    body, sig = outer["body"], outer["sig"]
    try:
        fields = canonical.loads(body, max_size=MAX_BYTES, max_depth=4)
        if not isinstance(fields, dict):
            raise WireRefused("heartbeat body is not a map")
        hb = from_dict(fields)
    except (canonical.CanonicalError, WireUsageError) as exc:
        raise WireRefused(f"heartbeat body: {exc}") from None
    try:
        nacl.signing.VerifyKey(bytes.fromhex(hb.node_id)).verify(DOMAIN + body, sig)
    except (nacl.exceptions.BadSignatureError, ValueError, nacl.exceptions.ValueError):
        raise WireRefused("heartbeat signature does not verify for its node id") from None
    return hb
