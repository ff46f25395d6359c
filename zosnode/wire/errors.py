"""Errors of the wire layer: our mistakes apart from the peer's."""

from __future__ import annotations

from zosnode.errors import UsageError, ZosError


class WireError(ZosError):
    """Base of every wire-format error."""


class WireUsageError(WireError, UsageError):
    """WE tried to build or sign something invalid."""


class WireRefused(WireError):
    """The PEER sent bytes we refuse: malformed, oversize, forged or replayed."""
