"""Private key files: created 0600, never clobbered, refused when unsafe or malformed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zosnode.trust import keyfile
from zosnode.trust.errors import TrustUsageError
from zosnode.trust.signing import key_id


def test_round_trip(tmp_path: Path) -> None:
    key = keyfile.generate(tmp_path / "k")
    assert key_id(keyfile.load(tmp_path / "k")) == key_id(key)
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"", "not a zosnode key file"),
        (b"zosnode-ed25519-secret-v1\nzz\n", "not 64 hex digits"),
        (b"zosnode-ed25519-secret-v1\n" + b"ab" * 31 + b"\n", "not 64 hex digits"),
        (b"ssh-ed25519 AAAA\n", "not a zosnode key file"),
        (b"x" * 10_000, "not a zosnode key file"),
    ],
)
def test_malformed_key_files(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "k"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(TrustUsageError, match=needle):
        keyfile.load(path)


def test_symlink_and_directory_are_refused(tmp_path: Path) -> None:
    keyfile.generate(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(TrustUsageError, match="cannot open"):
        keyfile.load(tmp_path / "link")
    (tmp_path / "dir").mkdir(mode=0o700)
    with pytest.raises(TrustUsageError):
        keyfile.load(tmp_path / "dir")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o700 | 0o004])
def test_group_or_other_access_is_refused(tmp_path: Path, mode: int) -> None:
    keyfile.generate(tmp_path / "k")
    os.chmod(tmp_path / "k", mode)
    with pytest.raises(TrustUsageError, match=f"mode {mode:04o}"):
        keyfile.load(tmp_path / "k")


def test_generate_refuses_an_existing_file_of_any_kind(tmp_path: Path) -> None:
    (tmp_path / "k").write_text("precious")
    with pytest.raises(TrustUsageError, match="already exists"):
        keyfile.generate(tmp_path / "k")
    assert (tmp_path / "k").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]
