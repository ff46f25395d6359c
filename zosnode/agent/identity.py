"""The node's ed25519 identity: its node id is the hex public key.

By default the key lives only in RAM, so a diskless node gets a new id on
every boot. With a disk cache configured it is kept at `<cache>/node.key`
(the 32-byte seed, mode 0600, written whole or not at all: `atomicfile`) and
reused. Local disks are untrusted: a key file that is not exactly a seed is
replaced by a new identity rather than trusted in part, and what happened is
reported to the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nacl.signing

from zosnode.atomicfile import write_atomic
from zosnode.errors import ZosError

KEY_FILE = "node.key"
SEED_BYTES = 32


class IdentityError(ZosError):
    """A stored key could not be used (wrong size, unreadable)."""


@dataclass(frozen=True)
class NodeIdentity:
    signing_key: nacl.signing.SigningKey
    source: str  # "ram", "created", "loaded", or "replaced: <why>"

    @property
    def node_id(self) -> str:
        return bytes(self.signing_key.verify_key).hex()


def decode_seed(data: bytes) -> nacl.signing.SigningKey:
    if len(data) != SEED_BYTES:
        raise IdentityError(f"node key file holds {len(data)} bytes, not a {SEED_BYTES}-byte seed")
    return nacl.signing.SigningKey(data)


def in_ram() -> NodeIdentity:
    return NodeIdentity(nacl.signing.SigningKey.generate(), "ram")


def load_or_create(cache: Path | None) -> NodeIdentity:
    if cache is None:
        return in_ram()
    path = cache / KEY_FILE
    why = ""
    try:
        return NodeIdentity(decode_seed(path.read_bytes()[: SEED_BYTES + 1]), "loaded")
    except FileNotFoundError:
        pass
    except (OSError, IdentityError) as exc:
        why = str(exc)
    key = nacl.signing.SigningKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, bytes(key), mode=0o600)
    return NodeIdentity(key, f"replaced: {why}" if why else "created")
