"""Mutation fuzzing of signed manifests and roots: only our errors, never an accept.

Documents carry exactly the threshold of signatures, so any change to the
bytes must be refused (with more signatures than needed, breaking a spare
one would rightly still verify).
"""

from __future__ import annotations

from typing import Any

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.trust.repo_sim import NOW, RepoSim, key, sign
from zosnode import canonical
from zosnode.trust.anchor import decode as decode_anchor
from zosnode.trust.errors import Refused
from zosnode.trust.manifest import decode_body as decode_manifest
from zosnode.trust.root import decode_body as decode_root
from zosnode.trust.signing import encode_anchor, encode_manifest, encode_root

SIM = RepoSim(3, 2)
MANIFEST = SIM.signed_manifest()
ANCHOR = SIM.anchor()
NEXT_ROOT = RepoSim(3, 2).rotate([key(f"gen2-{i}") for i in range(3)], 2)
SETTINGS = settings(max_examples=300, deadline=None)


def refused_manifest(data: bytes) -> bool:
    from zosnode.trust.verifier import Verifier

    try:
        Verifier(ANCHOR).verify_manifest(data, channel="stable", now=NOW)
    except Refused:
        return True
    return False


def refused_root(data: bytes) -> bool:
    from zosnode.trust.verifier import Verifier

    try:
        Verifier(ANCHOR).refresh().received(data)
    except Refused:
        return True
    return False


def flip(data: bytes, index: int, bit: int) -> bytes:
    out = bytearray(data)
    out[index % len(out)] ^= 1 << bit
    return bytes(out)


def test_originals_verify() -> None:
    assert not refused_manifest(MANIFEST)
    assert not refused_root(NEXT_ROOT)


@SETTINGS
@given(st.integers(min_value=0), st.integers(0, 7))
def test_manifest_bit_flips(index: int, bit: int) -> None:
    assert refused_manifest(flip(MANIFEST, index, bit))


@SETTINGS
@given(st.integers(min_value=0), st.integers(0, 7))
def test_root_bit_flips(index: int, bit: int) -> None:
    assert refused_root(flip(NEXT_ROOT, index, bit))


@SETTINGS
@given(st.sampled_from(["manifest", "root"]), st.data())
def test_truncation_and_insertion(which: str, data: st.DataObject) -> None:
    original = MANIFEST if which == "manifest" else NEXT_ROOT
    check = refused_manifest if which == "manifest" else refused_root
    cut = data.draw(st.integers(0, len(original) - 1))
    assert check(original[:cut])
    extra = data.draw(st.binary(min_size=1, max_size=16))
    at = data.draw(st.integers(0, len(original)))
    assert check(original[:at] + extra + original[at:])


def _swap(value: dict[str, Any], a: str, b: str) -> dict[str, Any]:
    out = dict(value)
    out[a], out[b] = value[b], value[a]
    return out


BODY = canonical.loads(encode_manifest(SIM.manifest()), max_size=1 << 20)


@SETTINGS
@given(
    st.sampled_from(sorted(BODY)),
    st.sampled_from(sorted(BODY)),
    st.sampled_from(["original", "one key", "attacker"]),
)
def test_swapped_fields(a: str, b: str, signers: str) -> None:
    swapped = _swap(BODY, a, b)
    if swapped == BODY:
        return
    body = cbor2.dumps(swapped, canonical=True)
    if signers == "original":  # the old signatures over the new bytes
        env = cbor2.loads(MANIFEST)
        env["signed"] = body
        data = cbor2.dumps(env, canonical=True)
    elif signers == "one key":
        data = sign("manifest", body, SIM.keys[:1])
    else:
        data = sign("manifest", body, [key("evil-1"), key("evil-2")])
    assert refused_manifest(data)


ROOT_BODY = canonical.loads(cbor2.loads(NEXT_ROOT)["signed"], max_size=1 << 16)


@SETTINGS
@given(st.sampled_from(sorted(ROOT_BODY)), st.sampled_from(sorted(ROOT_BODY)), st.booleans())
def test_root_swapped_fields(a: str, b: str, resign_below_threshold: bool) -> None:
    swapped = _swap(ROOT_BODY, a, b)
    if swapped == ROOT_BODY:
        return
    body = cbor2.dumps(swapped, canonical=True)
    if resign_below_threshold:
        data = sign("root", body, SIM.keys[:1] + [key("gen2-0"), key("gen2-1")])
    else:
        env = cbor2.loads(NEXT_ROOT)
        env["signed"] = body
        data = cbor2.dumps(env, canonical=True)
    assert refused_root(data)


@SETTINGS
@given(st.integers(min_value=0), st.integers(0, 7))
def test_body_parser_alone_raises_only_our_errors(index: int, bit: int) -> None:
    # Past the signature check (as if a key signed garbage): still only ours.
    body = flip(encode_manifest(SIM.manifest()), index, bit)
    try:
        decode_manifest(body)
    except Refused:
        pass


@SETTINGS
@given(st.integers(min_value=0), st.integers(0, 7))
def test_root_body_parser_alone_raises_only_our_errors(index: int, bit: int) -> None:
    try:
        decode_root(flip(encode_root(SIM.root), index, bit))
    except Refused:
        pass


@SETTINGS
@given(st.integers(min_value=0), st.integers(0, 7))
def test_anchor_decoder_raises_only_our_errors(index: int, bit: int) -> None:
    data = flip(encode_anchor(ANCHOR), index, bit)
    try:
        decode_anchor(data)
    except Refused:
        pass


@SETTINGS
@given(st.binary(max_size=512))
def test_random_bytes(data: bytes) -> None:
    assert refused_manifest(data)
    assert refused_root(data)
