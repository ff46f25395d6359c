"""ed25519 keys as the trust layer sees them: a key id is the public key in hex.

Signatures are over a domain-separated message, so a root signature can never
pass as a manifest signature or as anything else signed with the same key.
"""

from __future__ import annotations

from nacl.exceptions import BadSignatureError as NaclBadSignature
from nacl.signing import VerifyKey

from zosnode.layout import is_hex_id
from zosnode.trust.errors import TrustUsageError

SIGNATURE_LEN = 64
_DOMAIN = b"zosnode-signed-v1\x00"
# Documents a key may sign; the kind is part of the signed message.
KINDS = ("root", "manifest")
# A key id is spelled like every 256-bit id (`zosnode.layout`).
is_key_id = is_hex_id


def signed_message(kind: str, body: bytes) -> bytes:
    if kind not in KINDS:
        raise TrustUsageError(f"unknown document kind {kind!r}")
    return _DOMAIN + kind.encode() + b"\x00" + body


def signature_valid(kid: str, kind: str, body: bytes, signature: bytes) -> bool:
    """True only if `signature` is `kid`'s over exactly (kind, body)."""
    if not is_key_id(kid):  # bytes.fromhex would take spaces and capitals
        return False
    try:
        VerifyKey(bytes.fromhex(kid)).verify(signed_message(kind, body), signature)
    except (NaclBadSignature, ValueError):
        # ValueError: a key id not on the curve, a signature not 64 bytes long.
        return False
    return True
