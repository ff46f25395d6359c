"""The trust layer's errors: `TrustUsageError` is OUR invalid input (a bad field, a bad key
file); each `Refused` subclass is one kind of attack by a PEER (hub, mirror, signer, network)."""

from zosnode.errors import UsageError, ZosError


class TrustError(ZosError):
    """Base of every error the trust layer raises."""


class TrustUsageError(TrustError, UsageError):
    """We asked for something invalid (a local programming or input mistake)."""


def need(ok: bool, message: str) -> None:
    if not ok:
        raise TrustUsageError(message)


class Refused(TrustError):
    """Data from a peer is refused; the subclass says which rule it broke."""


class MalformedError(Refused):
    """Not canonical CBOR, wrong types, duplicate keys, unknown critical fields."""


class OversizeError(Refused):
    """More bytes than the cap for this document or the size the manifest pins."""


class ThresholdError(Refused):
    """Fewer valid signatures from trusted keys than the threshold."""


class UnknownKeyError(ThresholdError):
    """Under threshold, and signatures came from keys the root does not list."""


class BadSignatureError(ThresholdError):
    """Under threshold, and a trusted key's signature is over other bytes."""


class RollbackError(Refused):
    """A version lower than one already trusted or than the compiled-in floor."""


class EquivocationError(Refused):
    """The same version as one already trusted, with different bytes."""


class ExpiredError(Refused):
    """The manifest or the trusted root has expired (freeze attack)."""


class WrongChannelError(Refused):
    """A manifest signed for another channel."""


class RotationError(Refused):
    """A new root that does not chain from the trusted one (version gap, type)."""


class AgentTooOldError(Refused):
    """The manifest needs a newer agent than the one running."""
