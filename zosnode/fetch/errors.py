"""The fetch layer's errors: our mistakes apart from what mirrors did wrong."""

from zosnode.errors import UsageError, ZosError


class FetchError(ZosError):
    """Base of the fetch layer's errors."""


class FetchUsageError(FetchError, UsageError):
    """We asked for something invalid (no mirrors, a malformed id, a bad cap)."""


class Unavailable(FetchError):
    """No mirror delivered a verified copy within the deadline."""


class CircuitOpen(FetchError):
    """The mirror's circuit is open (or its one trial is out): it was not asked."""


class WrongCopy(FetchError):
    """Bytes that do not hash to the id asked for (an undecodable block is `IntegrityError`)."""
