"""The HTTP layer's errors: ours apart from the peer's (`HttpPeerError`, `HttpRefused`)."""

from zosnode.errors import UsageError, ZosError


class HttpError(ZosError):
    """Base of the HTTP layer's errors."""


class HttpUsageError(HttpError, UsageError):
    """We asked the HTTP layer for something it cannot do (a bug, or a user's bad URL)."""
