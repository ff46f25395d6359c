"""The codec and the identity against a real TPM 2.0 (swtpm, started per test in a temp dir).

What the design rests on, checked by experiment: a primary keyedHash key
from the fixed template is re-derived from the TPM's seed, so the same TPM
state gives the same HMAC (across calls and swtpm restarts) and a fresh state
a different one.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.tpm import swtpm
from zosnode.agent import identity
from zosnode.tpm import codec, device
from zosnode.tpm.errors import TpmResponseError

pytestmark = pytest.mark.skipif(swtpm.missing() is not None, reason=str(swtpm.missing()))
LABEL = identity.TPM_LABEL


def _derive(sock: Path, label: bytes = LABEL) -> bytes:
    tpm = swtpm.SwtpmSocket(sock)
    try:
        return device.derive(tpm, label)
    finally:
        tpm.close()


def test_same_tpm_same_seed_fresh_tpm_other_seed(tmp_path: Path) -> None:
    state = tmp_path / "a" / "state"
    with swtpm.server(state, tmp_path / "a.sock") as sock:
        t0 = time.perf_counter()
        first = _derive(sock)
        ms = (time.perf_counter() - t0) * 1000
        assert _derive(sock) == first and len(first) == 32
        assert _derive(sock, b"another label") != first
    with swtpm.server(state, tmp_path / "a.sock") as sock:  # the machine rebooted
        assert _derive(sock) == first
    with swtpm.server(tmp_path / "b" / "state", tmp_path / "b.sock") as sock:  # another TPM
        assert _derive(sock) != first
    print(f"identity derivation with swtpm: {ms:.1f} ms")


def test_the_primary_is_the_same_object_each_time(tmp_path: Path) -> None:
    with swtpm.server(tmp_path / "state", tmp_path / "s.sock") as sock:
        tpm = swtpm.SwtpmSocket(sock)
        try:
            assert device.manufacturer(tpm)  # "IBM SW TPM" for swtpm
            names = []
            for _ in range(2):
                p = device.call(tpm, codec.create_primary_hmac(), codec.parse_create_primary)
                names.append(p.name)
                device.call(tpm, codec.flush_context(p.handle), codec.parse_flush_context)
            assert names[0] == names[1] and names[0][:2] == b"\x00\x0b"  # SHA-256 name
            # A refusal from the real TPM comes back typed and named: the key is gone.
            with pytest.raises(TpmResponseError, match="TPM_RC_REFERENCE_H0"):
                device.call(tpm, codec.hmac(p.handle, LABEL), codec.parse_hmac)
        finally:
            tpm.close()


def test_identity_from_the_tpm_leaves_the_disk_alone(tmp_path: Path) -> None:
    cache, other = tmp_path / "cache", tmp_path / "other"
    cache.mkdir()
    other.mkdir()
    old = b"\x07" * 32
    (other / identity.KEY_FILE).write_bytes(old)  # a node that once had a disk identity
    with swtpm.server(tmp_path / "state", tmp_path / "s.sock") as sock:
        def open_tpm() -> swtpm.SwtpmSocket:
            return swtpm.SwtpmSocket(sock)

        a = identity.load_or_create(cache, tpm=open_tpm)
        b = identity.load_or_create(other, tpm=open_tpm)
        seed = _derive(sock)
    assert a.source == b.source == "tpm" and a.detail
    assert a.node_id == b.node_id and bytes(a.signing_key) == seed
    assert list(cache.iterdir()) == []  # nothing written
    assert (other / identity.KEY_FILE).read_bytes() == old  # nor used, nor changed
