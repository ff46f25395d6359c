"""Fuzz target `heartbeat`: the signed node heartbeat the hub decodes from any peer.

The input is tried twice: as the whole wire document, and as a heartbeat body
signed here with the key whose id the seeds carry (so schema mutations get
past the signature). Property: `WireRefused` only, and an accepted heartbeat
re-encodes to the very same body.
"""

from __future__ import annotations

import nacl.signing
from hypothesis import strategies as st

from tests.fuzz.budget import Target, fuzz, replay
from tests.fuzz.mutate import cbor_havoc, havoc
from zosnode import canonical
from zosnode.wire.errors import WireRefused
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
from zosnode.wire.heartbeat_verify import decode_verified

NODE = nacl.signing.SigningKey(b"\x07" * 32)
NODE_ID = NODE.verify_key.encode().hex()


def _decoded(wire: bytes) -> None:
    try:
        hb = decode_verified(wire)
    except WireRefused:
        return
    body = canonical.loads(wire, max_size=1 << 20)["body"]
    assert canonical.dumps(hb.to_dict()) == body, "accepted body re-encodes differently"


def check_heartbeat(data: bytes) -> None:
    _decoded(data)
    sig = NODE.sign(DOMAIN + data).signature
    _decoded(canonical.dumps({"body": data, "sig": sig}))


HEARTBEAT = Target("heartbeat", check_heartbeat)

_HB = Heartbeat(
    node_id=NODE_ID, farm="farm-7", channel="stable", release=3, agent_version="0.1.0",
    sent_at=1_700_000_000, uptime_s=42,
    services=(ServiceState("web", "running", 0), ServiceState("metrics", "backoff", 2)),
    addresses=("10.0.0.5/24",), audit=("tcp 0.0.0.0:22",), failed_release=2,
    boot_timings_ms={"dhcp": 800, "mount": 1200},
)
# The later, optional fields too, so mutations reach their decoding.
_HB_FULL = Heartbeat(
    **{**_HB.__dict__, "secure_boot": "enabled", "identity_source": "disk",
       "hardware": HardwareReport(2, 1 << 30, (DiskReport("vda", 1 << 26, "QEMU", "cache"),)),
       "cache": CacheReport("disk", 1 << 26, 1 << 20, 9, 1, 1),
       "refusals": (RefusalReport("mirror", "block id mismatch", 1_700_000_000),)},
)
BODIES = [canonical.dumps(_HB.to_dict()), canonical.dumps(_HB_FULL.to_dict())]
WIRE = [encode_signed(_HB, NODE), encode_signed(_HB_FULL, NODE)]

test_heartbeat_regressions = replay(HEARTBEAT)
test_heartbeat_cbor_havoc = fuzz(HEARTBEAT, cbor_havoc(BODIES))
test_heartbeat_havoc = fuzz(HEARTBEAT, havoc(WIRE + BODIES))
test_heartbeat_raw = fuzz(HEARTBEAT, st.binary(max_size=256))


def test_seed_is_accepted() -> None:
    assert decode_verified(WIRE[0]) == _HB
