"""Fuzz targets `envelope`, `root`, `manifest`, `anchor`: the trust documents' decoders.

Property: any bytes are refused with `Refused` (the peer's fault; a
`TrustUsageError` from a decoder would be our bug) or accepted, and an
accepted document re-encodes to the very same bytes, except for the "x-"
extension fields the schema lets a verifier skip: those are not kept in the
typed value, so the re-encoding is the document without them.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.fuzz.budget import Target, fuzz, replay
from tests.fuzz.mutate import cbor_havoc, havoc
from tests.trust.repo_sim import RepoSim, key
from zosnode import canonical
from zosnode.trust import envelope
from zosnode.trust.anchor import decode as decode_anchor
from zosnode.trust.errors import Refused
from zosnode.trust.manifest import ServiceSpec
from zosnode.trust.manifest import decode_body as decode_manifest
from zosnode.trust.root import decode_body as decode_root
from zosnode.trust.schema import EXTENSION_PREFIX
from zosnode.trust.signing import (
    encode_anchor,
    encode_envelope,
    encode_manifest,
    encode_root,
)

MAX = 1 << 20


def _plain(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    return {k: v for k, v in value.items()
            if not (isinstance(k, str) and k.startswith(EXTENSION_PREFIX))}


def _expected(data: bytes, lists: tuple[str, ...] = ()) -> bytes:
    """`data` without extension fields at the top and in the maps of `lists`."""
    doc = _plain(canonical.loads(data, max_size=MAX))
    for name in lists:
        doc[name] = [_plain(item) for item in doc[name]]
    return canonical.dumps(doc)


def check_envelope(data: bytes) -> None:
    for kind in ("root", "manifest"):
        try:
            env = envelope.decode(data, max_size=MAX, kind=kind)
        except Refused:
            continue
        assert encode_envelope(env) == _expected(data, ("signatures",))


def check_root(data: bytes) -> None:
    try:
        root = decode_root(data)
    except Refused:
        return
    assert encode_root(root) == _expected(data)


def check_manifest(data: bytes) -> None:
    try:
        manifest = decode_manifest(data)
    except Refused:
        return
    assert encode_manifest(manifest) == _expected(data, ("flists", "services"))


def check_anchor(data: bytes) -> None:
    try:
        anchor = decode_anchor(data)
    except Refused:
        return
    assert encode_anchor(anchor) == _expected(data)


ENVELOPE = Target("envelope", check_envelope)
ROOT = Target("root", check_root)
MANIFEST = Target("manifest", check_manifest)
ANCHOR = Target("anchor", check_anchor)

SIM = RepoSim(3, 2)
_rich = SIM.manifest(
    services=(
        ServiceSpec("init", "base", ("/bin/setup",), oneshot=True, stop_signal="SIGKILL",
                    restart_initial_ms=0, restart_max_ms=0, stop_timeout_ms=0),
        ServiceSpec("web", "app", ("/usr/bin/web", "--port", "80"), env={"A": "", "B": "x=y"},
                    after=("init",), ready=("/usr/bin/check",)),
    ),
    rollout_ppm=1, min_agent_version="1.2.3.4",
)
MANIFEST_SEEDS = [encode_manifest(SIM.manifest()), encode_manifest(_rich),
                  encode_manifest(SIM.manifest(services=(), flists=()))]
NEXT_ROOT = RepoSim(3, 2).rotate([key(f"gen2-{i}") for i in range(3)], 2, manifest_floor=5)
ROOT_SEEDS = [encode_root(SIM.root), envelope.decode(NEXT_ROOT, max_size=MAX, kind="root").body]
ENVELOPE_SEEDS = [SIM.signed_manifest(), NEXT_ROOT, SIM.root_bytes]
ANCHOR_SEEDS = [encode_anchor(SIM.anchor()), encode_anchor(SIM.anchor(floor=3))]

test_envelope_regressions = replay(ENVELOPE)
test_envelope_havoc = fuzz(ENVELOPE, havoc(ENVELOPE_SEEDS))
test_envelope_cbor_havoc = fuzz(ENVELOPE, cbor_havoc(ENVELOPE_SEEDS))
test_root_regressions = replay(ROOT)
test_root_havoc = fuzz(ROOT, havoc(ROOT_SEEDS))
test_root_cbor_havoc = fuzz(ROOT, cbor_havoc(ROOT_SEEDS))
test_manifest_regressions = replay(MANIFEST)
test_manifest_havoc = fuzz(MANIFEST, havoc(MANIFEST_SEEDS))
test_manifest_cbor_havoc = fuzz(MANIFEST, cbor_havoc(MANIFEST_SEEDS))
test_anchor_regressions = replay(ANCHOR)
test_anchor_cbor_havoc = fuzz(ANCHOR, cbor_havoc(ANCHOR_SEEDS))
test_trust_raw_bytes = fuzz(ENVELOPE, st.binary(max_size=256))


def test_seeds_are_accepted() -> None:
    for seed in MANIFEST_SEEDS:
        decode_manifest(seed)
    for seed in ROOT_SEEDS:
        decode_root(seed)
    for seed in ENVELOPE_SEEDS:
        envelope.decode(seed, max_size=MAX, kind=canonical.loads(seed, max_size=MAX)["kind"])
    for seed in ANCHOR_SEEDS:
        decode_anchor(seed)
