"""The ed25519 identity (node id: the hex public key; docs/identity.md), seeded by the TPM (derived,
written nowhere), else the disk's `node.key` (untrusted: not exactly a seed, replaced), else RAM."""

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nacl.signing

from zosnode.atomicfile import write_atomic
from zosnode.errors import ZosError
from zosnode.tpm import device
from zosnode.tpm.device import TPM_DEVICE, Transport
from zosnode.tpm.errors import TpmError, TpmFormatError, TpmResponseError

KEY_FILE = "node.key"
SEED_BYTES = 32
SOURCES = ("tpm", "disk", "ram")
# What the TPM's HMAC key is applied to. Changing it changes every node id.
TPM_LABEL = b"zosnode node identity v1"


class IdentityError(ZosError):
    """A stored key could not be used (wrong size, unreadable)."""


@dataclass(frozen=True)
class NodeIdentity:
    signing_key: nacl.signing.SigningKey
    source: str  # one of SOURCES
    detail: str = ""

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"identity source {self.source!r} is not one of {SOURCES}")

    @property
    def node_id(self) -> str:
        return bytes(self.signing_key.verify_key).hex()

    def describe(self) -> str:
        return f"{self.source}: {self.detail}" if self.detail else self.source


def decode_seed(data: bytes) -> nacl.signing.SigningKey:
    if len(data) != SEED_BYTES:
        raise IdentityError(f"node key file holds {len(data)} bytes, not a {SEED_BYTES}-byte seed")
    return nacl.signing.SigningKey(data)


def in_ram(detail: str = "") -> NodeIdentity:
    return NodeIdentity(nacl.signing.SigningKey.generate(), "ram", detail)


def from_tpm(open_tpm: Callable[[], Transport]) -> NodeIdentity:
    with contextlib.closing(open_tpm()) as tpm:
        try:
            maker = device.manufacturer(tpm)
        except (TpmResponseError, TpmFormatError) as exc:  # a label only: not worth the id
            maker = f"maker unknown: {exc}"
        seed = device.derive(tpm, TPM_LABEL)
    return NodeIdentity(nacl.signing.SigningKey(seed), "tpm", maker)


def on_disk(cache: Path, note: str = "") -> NodeIdentity:
    path = cache / KEY_FILE
    why = ""
    try:
        with path.open("rb") as f:
            key = decode_seed(f.read(SEED_BYTES + 1))
        return NodeIdentity(key, "disk", "loaded" + note)
    except FileNotFoundError:
        pass
    except (OSError, IdentityError) as exc:
        why = str(exc)
    key = nacl.signing.SigningKey.generate()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, bytes(key), mode=0o600)
    except OSError as exc:  # a read-only, full or vanished disk: RAM, never a failed boot
        return NodeIdentity(key, "ram", f"cannot write {path}: {exc.strerror}{note}")
    return NodeIdentity(key, "disk", (f"replaced: {why}" if why else "created") + note)


def load_or_create(cache: Path | None, tpm: Path | Callable[[], Transport] | None = TPM_DEVICE
                   ) -> NodeIdentity:
    """`tpm`: the device path (absent: no TPM), a function opening a transport (tests), or None."""
    note = ""
    if isinstance(tpm, Path):
        path = tpm
        tpm = (lambda: device.Device(path)) if path.exists() else None
    if tpm is not None:
        try:
            return from_tpm(tpm)
        except TpmError as exc:
            note = f"; TPM unusable: {exc}"
    return in_ram(note.lstrip("; ")) if cache is None else on_disk(cache, note)
