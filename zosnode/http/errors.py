"""The HTTP layer's errors: ours (`HttpUsageError`) apart from the peer's (`HttpPeerError`
on the client, `HttpRefused` on the server)."""

from zosnode.errors import UsageError, ZosError


class HttpError(ZosError):
    """Base of the HTTP layer's errors."""


class HttpUsageError(HttpError, UsageError):
    """We asked the HTTP layer for something it cannot do (a bug, or a user's bad URL)."""
