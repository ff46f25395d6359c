"""Private key files: 0600, never overwritten, refused if others can read them.

Format (text, so an offline signer can inspect it):

    zosnode-ed25519-secret-v1
    <64 hex digits: the 32-byte seed>
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from nacl.signing import SigningKey

from zosnode.trust.atomicfile import write_atomic
from zosnode.trust.errors import TrustUsageError
from zosnode.trust.signing import key_id

HEADER = "zosnode-ed25519-secret-v1"
MAX_KEY_FILE = 4096


def generate(path: Path) -> SigningKey:
    """Create a new key at `path` (mode 0600); refuse if the file exists."""
    key = SigningKey.generate()
    text = f"{HEADER}\n{bytes(key).hex()}\n".encode()
    write_atomic(path, text, mode=0o600, overwrite=False)
    return key


def load(path: Path) -> SigningKey:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise TrustUsageError(f"{path}: no such key file") from None
    except OSError as exc:
        raise TrustUsageError(f"{path}: cannot open key file: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise TrustUsageError(f"{path}: not a regular file")
        if info.st_mode & 0o077:
            raise TrustUsageError(
                f"{path}: private key is accessible by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); run chmod 600 on it"
            )
        raw = os.read(fd, MAX_KEY_FILE + 1)
    finally:
        os.close(fd)
    lines = raw.decode("ascii", errors="replace").split()
    if len(raw) > MAX_KEY_FILE or len(lines) != 2 or lines[0] != HEADER:
        raise TrustUsageError(f"{path}: not a zosnode key file (expected {HEADER!r} header)")
    try:
        seed = bytes.fromhex(lines[1])
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise TrustUsageError(f"{path}: the key is not 64 hex digits")
    return SigningKey(seed)


def public_id(path: Path) -> str:
    return key_id(load(path))
