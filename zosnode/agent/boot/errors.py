"""Errors of the boot sequence: ours, and what no hub or mirror gave us."""

from zosnode.errors import ZosError


class BootError(ZosError):
    """Base of the boot sequence's errors."""


class HubsUnreachable(BootError):
    """No hub answered (every one refused, timed out or failed)."""


class ReleaseFailed(BootError):
    """A release could not be brought up (an flist could not be fetched or mounted)."""
