"""Signed publish requests: who may write to a hub, and only once per request.

A publisher signs, with its ed25519 key, the request line and a digest of the
body together with a timestamp and a random nonce:

    sig = ed25519(DOMAIN + canonical_cbor([method, target, timestamp, nonce,
                                           blake2b256(body)]))

sent as headers `x-zos-publisher` (hex public key), `x-zos-timestamp` (unix
s), `x-zos-nonce` (32 hex) and `x-zos-signature` (hex). The hub accepts only
listed keys, a timestamp within the allowed clock skew, and a nonce it has
not seen inside that window (`zosnode.hub.replay`), so a captured request can
neither be replayed nor have its body, path or method swapped.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing

from zosnode import canonical
from zosnode.wire.errors import WireRefused, WireUsageError

DOMAIN = b"zosnode-publish-v1\x00"
MAX_SKEW_S = 300
H_PUBLISHER = "x-zos-publisher"
H_TIMESTAMP = "x-zos-timestamp"
H_NONCE = "x-zos-nonce"
H_SIGNATURE = "x-zos-signature"


@dataclass(frozen=True)
class SignedBy:
    publisher: str  # hex public key
    timestamp: int
    nonce: str


def _message(method: str, target: str, timestamp: int, nonce: str, body: bytes) -> bytes:
    digest = hashlib.blake2b(body, digest_size=32).digest()
    return DOMAIN + canonical.dumps([method, target, timestamp, nonce, digest])


def sign_request(key: nacl.signing.SigningKey, method: str, target: str, body: bytes, *,
                 now: int, nonce: str | None = None) -> tuple[tuple[str, str], ...]:
    """The headers that authenticate this request."""
    nonce = nonce if nonce is not None else secrets.token_hex(16)
    if len(nonce) != 32 or any(c not in "0123456789abcdef" for c in nonce):
        raise WireUsageError("nonce must be 32 lowercase hex digits")
    if not method.isupper() or not target.startswith("/"):
        raise WireUsageError(f"bad request line {method} {target!r}")
    sig = key.sign(_message(method, target, now, nonce, body)).signature
    return (
        (H_PUBLISHER, key.verify_key.encode().hex()),
        (H_TIMESTAMP, str(now)),
        (H_NONCE, nonce),
        (H_SIGNATURE, sig.hex()),
    )


def verify_request(method: str, target: str, body: bytes,
                   header: Callable[[str], str | None], *,
                   allowed: Collection[str], now: int,
                   max_skew_s: int = MAX_SKEW_S) -> SignedBy:
    """Who signed this request; WireRefused unless signed, fresh and by a listed key.

    Replay (a nonce seen before) is the caller's check: it holds the state.
    """
    values = [header(h) for h in (H_PUBLISHER, H_TIMESTAMP, H_NONCE, H_SIGNATURE)]
    if any(v is None for v in values):
        raise WireRefused("unsigned request: x-zos-publisher/-timestamp/-nonce/-signature needed")
    publisher, ts_text, nonce, sig_hex = (v.strip() for v in values if v is not None)
    if publisher not in allowed:
        raise WireRefused("publisher key is not allowed on this hub")
    if not ts_text.isascii() or not ts_text.isdigit() or len(ts_text) > 12:
        raise WireRefused("bad x-zos-timestamp")
    timestamp = int(ts_text)
    if abs(now - timestamp) > max_skew_s:
        raise WireRefused(f"timestamp is {timestamp - now:+d} s from the hub's clock "
                          f"(at most {max_skew_s} allowed)")
    if len(nonce) != 32 or any(c not in "0123456789abcdef" for c in nonce):
        raise WireRefused("bad x-zos-nonce")
    try:
        sig = bytes.fromhex(sig_hex)
        nacl.signing.VerifyKey(bytes.fromhex(publisher)).verify(
            _message(method, target, timestamp, nonce, body), sig)
    except (ValueError, nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        raise WireRefused("request signature does not verify") from None
    return SignedBy(publisher, timestamp, nonce)
