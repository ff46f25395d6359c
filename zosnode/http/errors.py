"""The HTTP layer's errors, client and server alike.

`HttpUsageError` is ours: a URL or argument the client cannot use, or a
response the server must not send. Everything the peer (or the network to
it) does wrong is an `HttpPeerError` on the client (`zosnode.http.client`)
and an `HttpRefused` on the server (`zosnode.http.requesthead`).
"""

from __future__ import annotations

from zosnode.errors import UsageError, ZosError


class HttpError(ZosError):
    """Base of the HTTP layer's errors."""


class HttpUsageError(HttpError, UsageError):
    """We asked the HTTP layer for something it cannot do (a bug, or a bad URL a
    user gave us)."""
