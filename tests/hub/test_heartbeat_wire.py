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
    Heartbeat,
    ServiceState,
    encode_signed,
)
from zosnode.wire.heartbeat_verify import decode_verified

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


def test_we_refuse_to_build_or_sign_nonsense() -> None:
    with pytest.raises(WireUsageError):
        heartbeat(node_id="xyz")
    with pytest.raises(WireUsageError):
        heartbeat(uptime_s=-1)
    with pytest.raises(WireUsageError):
        heartbeat(farm="f" * 1000)
    with pytest.raises(WireUsageError):
        encode_signed(heartbeat(), key("someone else"))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_is_refused_not_crashing(data: bytes) -> None:
    with pytest.raises(WireRefused):
        decode_verified(data)
