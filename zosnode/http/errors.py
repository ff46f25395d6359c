"""The HTTP layer's errors: `HttpUsageError` is ours (a URL we cannot use, a reply
the server must not send); the peer's are `HttpPeerError` (client) and `HttpRefused`
(server, `zosnode.http.requesthead`)."""

from __future__ import annotations

from zosnode.errors import UsageError, ZosError


class HttpError(ZosError):
    """Base of the HTTP layer's errors."""


class HttpUsageError(HttpError, UsageError):
    """We asked the HTTP layer for something it cannot do (a bug, or a user's bad URL)."""
