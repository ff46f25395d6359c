"""The mount layer's errors."""

from __future__ import annotations

from zosnode.errors import ZosError


class MountError(ZosError):
    """Base of the mount layer's errors."""


class MountUsageError(MountError):
    """We asked for an impossible mount (bad mountpoint, one already live here)."""


class MountFailed(MountError):
    """The kernel or FUSE refused the mount."""
