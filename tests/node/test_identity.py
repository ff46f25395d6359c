"""The node key: RAM by default, persisted atomically on a cache, never trusted in part."""

from __future__ import annotations

import stat
from pathlib import Path

import nacl.signing
import pytest

from zosnode.agent.identity import IdentityError, decode_seed, in_ram, load_or_create


def test_ram_identity_is_fresh_each_time() -> None:
    a, b = in_ram(), in_ram()
    assert a.node_id != b.node_id and len(a.node_id) == 64 and a.source == "ram"
    assert load_or_create(None).source == "ram"


def test_persisted_on_a_cache_and_reused(tmp_path: Path) -> None:
    first = load_or_create(tmp_path / "cache")
    assert first.source == "created"
    key = tmp_path / "cache" / "node.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert [p.name for p in key.parent.iterdir()] == ["node.key"]  # no temp left behind
    again = load_or_create(tmp_path / "cache")
    assert again.source == "loaded" and again.node_id == first.node_id


def test_signature_verifies_under_the_node_id() -> None:
    ident = in_ram()
    sig = ident.signing_key.sign(b"hello").signature
    nacl.signing.VerifyKey(bytes.fromhex(ident.node_id)).verify(b"hello", sig)


@pytest.mark.parametrize("junk", [b"", b"x" * 31, b"x" * 33, b"x" * 4096])
def test_a_damaged_key_file_is_replaced_not_trusted(tmp_path: Path, junk: bytes) -> None:
    (tmp_path / "node.key").write_bytes(junk)
    ident = load_or_create(tmp_path)
    assert ident.source.startswith("replaced: node key file holds")
    assert len((tmp_path / "node.key").read_bytes()) == 32
    assert load_or_create(tmp_path).node_id == ident.node_id


def test_decode_seed() -> None:
    with pytest.raises(IdentityError):
        decode_seed(b"short")
    assert len(bytes(decode_seed(b"\x01" * 32).verify_key)) == 32
