"""The signed envelope of every root and manifest: {"kind", "signed": the body's canonical
CBOR, "signatures": [{"keyid": hex public key, "sig"}] sorted by keyid}. A signature covers
the body's exact bytes (verifying never re-encodes), is checked before the body is parsed,
and is domain-separated by kind (`signed_message`): a root's never passes for another's."""

from collections.abc import Collection
from dataclasses import dataclass

from nacl.exceptions import BadSignatureError as NaclBadSignature
from nacl.signing import VerifyKey

from zosnode.layout import is_hex_id
from zosnode.trust import errors
from zosnode.trust.errors import MalformedError, TrustUsageError, need
from zosnode.trust.schema import Fields, load

MAX_SIGNATURES = 64
SIGNATURE_LEN = 64
_DOMAIN = b"zosnode-signed-v1\x00"
KINDS = ("root", "manifest")  # documents a key may sign; the kind is in the signed message


def signed_message(kind: str, body: bytes) -> bytes:
    if kind not in KINDS:
        raise TrustUsageError(f"unknown document kind {kind!r}")
    return _DOMAIN + kind.encode() + b"\x00" + body


def signature_valid(kid: str, kind: str, body: bytes, signature: bytes) -> bool:
    """True only if `signature` is `kid`'s (a `Signature`'s, so hex checked) over (kind, body)."""
    try:
        VerifyKey(bytes.fromhex(kid)).verify(signed_message(kind, body), signature)
    except (NaclBadSignature, ValueError):
        # ValueError: a key id not on the curve, a signature not 64 bytes long.
        return False
    return True


@dataclass(frozen=True)
class Signature:
    keyid: str
    sig: bytes

    def __post_init__(self) -> None:
        # is_hex_id, not bytes.fromhex alone: that would take spaces and capitals.
        need(is_hex_id(self.keyid), f"key id {self.keyid!r} is not 64 lowercase hex digits")
        need(len(self.sig) == SIGNATURE_LEN,
             f"a signature is {SIGNATURE_LEN} bytes, not {len(self.sig)}")


@dataclass(frozen=True)
class Envelope:
    kind: str
    body: bytes
    signatures: tuple[Signature, ...] = ()

    def __post_init__(self) -> None:
        need(self.kind in KINDS, f"unknown document kind {self.kind!r}")
        ids = [s.keyid for s in self.signatures]
        need(ids == sorted(set(ids)), "signatures must be sorted by key id, one per key")
        need(len(ids) <= MAX_SIGNATURES, f"more than {MAX_SIGNATURES} signatures")


def decode(data: bytes, *, max_size: int, kind: str) -> Envelope:
    if len(data) > max_size:
        raise errors.OversizeError(f"{kind}: {len(data)} bytes is over the {max_size}-byte cap")
    fields = load(data, kind, ("kind", "signed", "signatures"), max_size=max_size, max_depth=8)
    got_kind = fields.get("kind", str)
    if got_kind != kind:
        raise MalformedError(f"expected a {kind}, got a {got_kind!r} document")
    body = fields.get("signed", bytes)
    raw = fields.get("signatures", list)
    # Checked before any entry is read: at most MAX_SIGNATURES are ever parsed.
    if len(raw) > MAX_SIGNATURES:
        raise MalformedError(f"{kind}: {len(raw)} signatures is over the cap of {MAX_SIGNATURES}")
    try:
        entries = [Fields(item, f"{kind}.signatures[{i}]", ("keyid", "sig"))
                   for i, item in enumerate(raw)]
        sigs = tuple(Signature(e.get("keyid", str), e.get("sig", bytes)) for e in entries)
        return Envelope(kind, body, sigs)
    except TrustUsageError as exc:
        raise MalformedError(f"{kind}: {exc}") from None


def require_threshold(env: Envelope, trusted: Collection[str], threshold: int,
                      by: str) -> frozenset[str]:
    """The trusted keys whose signature over the body verifies, if at least `threshold`
    (others are ignored: anyone can append garbage); below it, the error type says why."""
    good = frozenset(s.keyid for s in env.signatures if s.keyid in trusted
                     and signature_valid(s.keyid, env.kind, env.body, s.sig))
    if len(good) >= threshold:
        return good
    unknown = [s.keyid[:16] for s in env.signatures if s.keyid not in trusted]
    bad = [s.keyid[:16] for s in env.signatures if s.keyid in trusted and s.keyid not in good]
    summary = f"{env.kind}: {len(good)} valid signature(s) from {by}, {threshold} required"
    if bad:
        raise errors.BadSignatureError(f"{summary}; signature by {', '.join(bad)} is over "
                                       "other bytes")
    if unknown:
        raise errors.UnknownKeyError(f"{summary}; signed by unknown key(s) {', '.join(unknown)}")
    raise errors.ThresholdError(summary)
