"""The signed heartbeat format: round trip, tampering, truncation, trailing data."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.hub.releases import key
from zosnode import canonical
from zosnode.wire.errors import WireRefused, WireUsageError
from zosnode.wire.heartbeat import (
    DOMAIN,
    CacheReport,
    DiskReport,
    HardwareReport,
    Heartbeat,
    RefusalReport,
    ServiceState,
    encode_signed,
)
from zosnode.wire.heartbeat_verify import decode_verified, from_dict

NODE = key("node-1")
NODE_ID = NODE.verify_key.encode().hex()


def heartbeat(**over: object) -> Heartbeat:
    fields: dict[str, object] = dict(
        node_id=NODE_ID, farm="farm-7", channel="stable", release=3,
        agent_version="0.1.0", sent_at=1_700_000_000, uptime_s=42,
        services=(ServiceState("sshd-free", "running", 0), ServiceState("metrics", "backoff", 2)),
        addresses=("10.0.0.5/24", "fd00::5/64"), audit=(), failed_release=None,
        boot_timings_ms={"dhcp": 800, "mount": 1200},
    )
    fields.update(over)
    return Heartbeat(**fields)  # type: ignore[arg-type]


def test_round_trip() -> None:
    hb = heartbeat()
    assert decode_verified(encode_signed(hb, NODE)) == hb


def test_every_truncation_and_trailing_data_refused() -> None:
    data = encode_signed(heartbeat(), NODE)
    for n in range(len(data)):
        with pytest.raises(WireRefused):
            decode_verified(data[:n])
    with pytest.raises(WireRefused):
        decode_verified(data + b"\x00")


def test_every_flipped_byte_refused() -> None:
    data = encode_signed(heartbeat(), NODE)
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x01
        with pytest.raises(WireRefused):
            decode_verified(bytes(bad))


def test_signed_by_another_key_refused() -> None:
    hb = heartbeat()
    body = canonical.dumps(hb.to_dict())
    forged = canonical.dumps({"body": body, "sig": key("evil").sign(DOMAIN + body).signature})
    with pytest.raises(WireRefused, match="signature"):
        decode_verified(forged)


def test_the_hub_refuses_the_nonsense_a_node_could_build() -> None:
    # The node builds and signs its heartbeat unchecked; the hub checks every bound and the key.
    for bad in ({"node_id": "xyz"}, {"uptime_s": -1}, {"farm": "f" * 1000}):
        with pytest.raises(WireUsageError):
            from_dict({**heartbeat().to_dict(), **bad})
    with pytest.raises(WireRefused, match="signature"):
        decode_verified(encode_signed(heartbeat(), key("someone else")))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_is_refused_not_crashing(data: bytes) -> None:
    with pytest.raises(WireRefused):
        decode_verified(data)


def full() -> Heartbeat:
    return heartbeat(
        secure_boot="enabled", identity_source="disk",
        hardware=HardwareReport(4, 8 << 30, (
            DiskReport("vda", 1 << 30, "QEMU HARDDISK", "cache"),
            DiskReport("nvme0n1", 1 << 40, "Samsung 980", "untouched"))),
        cache=CacheReport("disk", 1 << 30, 5 << 20, hits=90, misses=10, refetched=1),
        refusals=(RefusalReport("manifest", "signature does not verify", 1_700_000_000),
                  RefusalReport("dhcp", "offer from a rogue server", 1_699_999_000)),
    )


def test_new_fields_round_trip_and_stay_out_while_default() -> None:
    hb = full()
    assert decode_verified(encode_signed(hb, NODE)) == hb
    assert {"secure_boot", "identity_source", "hardware", "cache",
            "refusals"} <= set(hb.to_dict())
    # A heartbeat saying nothing new has the old shape, so an old hub takes it.
    assert not {"secure_boot", "identity_source", "hardware", "cache",
                "refusals"} & set(heartbeat().to_dict())


def test_an_old_nodes_heartbeat_decodes_with_defaults() -> None:
    old = heartbeat().to_dict()
    hb = from_dict(old)
    assert (hb.secure_boot, hb.identity_source, hb.hardware, hb.cache, hb.refusals) == (
        "unknown", "unknown", None, None, ())


def test_an_optional_field_spelled_out_at_its_default_is_refused() -> None:
    # One encoding per heartbeat (the fuzz target's re-encoding property).
    extras: list[dict[str, object]] = [{"secure_boot": "unknown"}, {"refusals": []}]
    for extra in extras:
        with pytest.raises(WireUsageError, match="default"):
            from_dict({**heartbeat().to_dict(), **extra})


@pytest.mark.parametrize("bad", [
    {"identity_source": "usb"},
    {"secure_boot": "x" * 33},
    {"hardware": {"cpus": 1, "memory_bytes": 1}},
    {"hardware": {"cpus": -1, "memory_bytes": 1, "disks": []}},
    {"hardware": {"cpus": 1, "memory_bytes": 1,
                  "disks": [{"name": "vda", "size_bytes": 1, "model": "m", "role": "os"}]}},
    {"cache": {"place": "tape", "size_bytes": 1, "used_bytes": 0, "hits": 0, "misses": 0,
               "refetched": 0, "note": ""}},
    {"refusals": [{"kind": "dhcp", "reason": "r", "at": 1}] * 2},
    {"refusals": [{"kind": "tpm", "reason": "r", "at": 1}]},
    {"refusals": {"kind": "dhcp"}},
])
def test_new_fields_are_checked_on_decode(bad: dict[str, object]) -> None:
    with pytest.raises(WireUsageError):
        from_dict({**heartbeat().to_dict(), **bad})


def test_the_fullest_heartbeat_fits() -> None:
    # The optional reports at their maximum still encode under the hub's MAX_BYTES.
    disks = tuple(DiskReport(f"d{i:030d}", 2**62, "m" * 64, "untouched") for i in range(64))
    hb = heartbeat(
        hardware=HardwareReport(2**20, 2**62, disks),
        refusals=tuple(RefusalReport(k, "r" * 256, 2**62) for k in ("dhcp", "manifest", "mirror")),
        cache=CacheReport("ram", 1, 1, 1, 1, 1, "n" * 256), secure_boot="s" * 32)
    assert decode_verified(encode_signed(hb, NODE)) == hb
