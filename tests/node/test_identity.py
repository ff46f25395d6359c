"""The node key: from the TPM when one works, else the cache disk (persisted
atomically, never trusted in part), else RAM; the source is always said."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import nacl.signing
import pytest

from tests.tpm import responses as r
from zosnode.agent.identity import (
    IdentityError,
    NodeIdentity,
    decode_seed,
    in_ram,
    load_or_create,
)
from zosnode.tpm.errors import TpmDeviceError

GOOD_TPM = (r.manufacturer(), r.create_primary(), r.hmac(), r.flush())


def test_ram_identity_is_fresh_each_time(tmp_path: Path) -> None:
    a, b = in_ram(), in_ram()
    assert a.node_id != b.node_id and len(a.node_id) == 64 and a.source == "ram"
    assert load_or_create(None, tpm=None).source == "ram"
    # No TPM device there: not an error, just the next source.
    assert load_or_create(None, tpm=tmp_path / "tpmrm0").describe() == "ram"


def test_persisted_on_a_cache_and_reused(tmp_path: Path) -> None:
    first = load_or_create(tmp_path / "cache", tpm=None)
    assert (first.source, first.detail) == ("disk", "created")
    key = tmp_path / "cache" / "node.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert [p.name for p in key.parent.iterdir()] == ["node.key"]  # no temp left behind
    again = load_or_create(tmp_path / "cache", tpm=tmp_path / "no-tpm")
    assert (again.source, again.detail) == ("disk", "loaded")
    assert again.node_id == first.node_id


def test_signature_verifies_under_the_node_id() -> None:
    ident = in_ram()
    sig = ident.signing_key.sign(b"hello").signature
    nacl.signing.VerifyKey(bytes.fromhex(ident.node_id)).verify(b"hello", sig)


@pytest.mark.parametrize("junk", [b"", b"x" * 31, b"x" * 33, b"x" * 4096])
def test_a_damaged_key_file_is_replaced_not_trusted(tmp_path: Path, junk: bytes) -> None:
    (tmp_path / "node.key").write_bytes(junk)
    ident = load_or_create(tmp_path, tpm=None)
    assert ident.source == "disk" and ident.detail.startswith("replaced: node key file holds")
    assert len((tmp_path / "node.key").read_bytes()) == 32
    assert load_or_create(tmp_path, tpm=None).node_id == ident.node_id


def test_an_unwritable_cache_degrades_to_ram(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = tmp_path / "file"  # root writes through 0o500; a file as parent fails for all
        target.write_bytes(b"")
        cache = target / "cache"
    else:
        cache = tmp_path / "ro"
        cache.mkdir(mode=0o500)
    ident = load_or_create(cache, tpm=None)
    assert ident.source == "ram" and ident.detail.startswith("cannot write")


def test_the_tpm_comes_first_and_the_disk_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "node.key").write_bytes(b"\x05" * 32)
    tpm = r.Scripted(*GOOD_TPM)
    ident = load_or_create(tmp_path, tpm=lambda: tpm)
    assert ident.describe() == "tpm: IBM SW TPM" and tpm.closed
    assert bytes(ident.signing_key) == r.DIGEST  # the seed is the TPM's HMAC
    assert (tmp_path / "node.key").read_bytes() == b"\x05" * 32
    assert load_or_create(None, tpm=lambda: r.Scripted(*GOOD_TPM)).node_id == ident.node_id


def test_a_tpm_that_fails_falls_back_and_says_why(tmp_path: Path) -> None:
    refusing = r.Scripted(r.manufacturer(), r.error(0x98E))  # owner auth set: AUTH_FAIL
    ident = load_or_create(tmp_path, tpm=lambda: refusing)
    assert ident.source == "disk" and refusing.closed
    assert ident.detail == ("created; TPM unusable: TPM refused CreatePrimary: "
                            "TPM_RC_AUTH_FAIL (session 1) (0x98e)")
    garbled = r.Scripted(r.manufacturer(), r.create_primary(), r.hmac() + b"\0", r.flush())
    ident = load_or_create(None, tpm=lambda: garbled)
    assert ident.source == "ram" and "says 53 bytes but holds 54" in ident.detail

    def absent() -> r.Scripted:
        raise TpmDeviceError("/dev/tpmrm0: Permission denied")

    assert load_or_create(tmp_path, tpm=absent).describe() == (
        "disk: loaded; TPM unusable: /dev/tpmrm0: Permission denied")


def test_a_tpm_without_a_maker_string_still_gives_the_identity() -> None:
    tpm = r.Scripted(r.error(0x1C4), *GOOD_TPM[1:])
    ident = load_or_create(None, tpm=lambda: tpm)
    assert ident.source == "tpm" and bytes(ident.signing_key) == r.DIGEST
    assert ident.detail.startswith("maker unknown: TPM refused GetCapability: TPM_RC_VALUE")


def test_a_device_that_is_not_a_tpm_is_refused_not_trusted(tmp_path: Path) -> None:
    ident = load_or_create(tmp_path, tpm=Path("/dev/null"))  # writes vanish, reads say EOF
    assert ident.source == "disk"
    assert ident.detail.endswith("TPM unusable: CreatePrimary response truncated at byte 0")


def test_the_source_is_one_of_three() -> None:
    with pytest.raises(ValueError):
        NodeIdentity(nacl.signing.SigningKey.generate(), "created")


def test_decode_seed() -> None:
    with pytest.raises(IdentityError):
        decode_seed(b"short")
    assert len(bytes(decode_seed(b"\x01" * 32).verify_key)) == 32
