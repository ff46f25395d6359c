"""The web layer's error: the request is wrong, and a 400 page says why."""

from __future__ import annotations

from zosnode.errors import UsageError


class PageInputError(UsageError):
    """A malformed query (farm id, channel, kernel argument, filter): the client's fault."""
