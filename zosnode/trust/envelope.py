"""The signed envelope around every root and manifest.

    {"kind": "root" | "manifest",
     "signed": <bstr: canonical CBOR of the body>,
     "signatures": [{"keyid": <hex>, "sig": <bstr 64>}, ...]}   sorted by keyid

The body travels as bytes and signatures cover those exact bytes (prefixed by
the kind, see `keys.signed_message`), so verification never depends on
re-encoding anything. Signatures are checked before the body is parsed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from zosnode import canonical
from zosnode.trust import keys
from zosnode.trust.errors import (
    BadSignatureError,
    MalformedError,
    OversizeError,
    ThresholdError,
    TrustUsageError,
    UnknownKeyError,
    need,
)
from zosnode.trust.schema import Fields

MAX_SIGNATURES = 64


@dataclass(frozen=True)
class Signature:
    keyid: str
    sig: bytes

    def __post_init__(self) -> None:
        need(keys.is_key_id(self.keyid), f"key id {self.keyid!r} is not 64 lowercase hex digits")
        need(len(self.sig) == keys.SIGNATURE_LEN,
             f"a signature is {keys.SIGNATURE_LEN} bytes, not {len(self.sig)}")


@dataclass(frozen=True)
class Envelope:
    kind: str
    body: bytes
    signatures: tuple[Signature, ...] = ()

    def __post_init__(self) -> None:
        need(self.kind in keys.KINDS, f"unknown document kind {self.kind!r}")
        ids = [s.keyid for s in self.signatures]
        need(ids == sorted(set(ids)), "signatures must be sorted by key id, one per key")
        need(len(ids) <= MAX_SIGNATURES, f"more than {MAX_SIGNATURES} signatures")



def decode(data: bytes, *, max_size: int, kind: str) -> Envelope:
    """Parse an envelope of `kind`; refuses oversize or malformed input."""
    if len(data) > max_size:
        raise OversizeError(f"{kind}: {len(data)} bytes is over the {max_size}-byte cap")
    try:
        value = canonical.loads(data, max_size=max_size, max_depth=8)
    except canonical.CanonicalError as exc:
        raise MalformedError(f"{kind}: {exc}") from None
    fields = Fields(value, kind, ("kind", "signed", "signatures"))
    got_kind = fields.text("kind")
    if got_kind != kind:
        raise MalformedError(f"expected a {kind}, got a {got_kind!r} document")
    body = fields.blob("signed")
    raw = fields.array("signatures")
    if len(raw) > MAX_SIGNATURES:
        raise MalformedError(f"{kind}: {len(raw)} signatures is over the cap of {MAX_SIGNATURES}")
    sigs = []
    for i, item in enumerate(raw):
        entry = Fields(item, f"{kind}.signatures[{i}]", ("keyid", "sig"))
        try:
            sigs.append(Signature(entry.text("keyid"), entry.blob("sig")))
        except TrustUsageError as exc:
            raise MalformedError(f"{kind}.signatures[{i}]: {exc}") from None
    try:
        return Envelope(kind, body, tuple(sigs))
    except TrustUsageError as exc:
        raise MalformedError(f"{kind}: {exc}") from None


def valid_signers(env: Envelope, trusted: Collection[str]) -> frozenset[str]:
    """The trusted keys whose signature over this envelope's body verifies."""
    return frozenset(
        s.keyid
        for s in env.signatures
        if s.keyid in trusted and keys.signature_valid(s.keyid, env.kind, env.body, s.sig)
    )


def require_threshold(
    env: Envelope, trusted: Collection[str], threshold: int, by: str
) -> frozenset[str]:
    """Refuse unless at least `threshold` of `trusted` signed this body.

    Extra, unknown or broken signatures are ignored when the threshold is met
    (anyone can append garbage; that must not matter); the valid signers are
    returned. When it is not met, the
    error type says why: a trusted key signed other bytes, or the signatures
    came from keys `by` does not list, or there were simply too few.
    """
    good = valid_signers(env, trusted)
    if len(good) >= threshold:
        return good
    unknown = sorted(s.keyid for s in env.signatures if s.keyid not in trusted)
    bad = sorted(s.keyid for s in env.signatures if s.keyid in trusted and s.keyid not in good)
    summary = f"{len(good)} valid signature(s) from {by}, {threshold} required"
    if bad:
        raise BadSignatureError(
            f"{env.kind}: {summary}; signature by {_short(bad)} is over other bytes"
        )
    if unknown:
        raise UnknownKeyError(f"{env.kind}: {summary}; signed by unknown key(s) {_short(unknown)}")
    raise ThresholdError(f"{env.kind}: {summary}")


def _short(ids: Iterable[str]) -> str:
    return ", ".join(i[:16] for i in ids)
