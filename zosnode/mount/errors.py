"""The mount layer's errors."""

from zosnode.errors import UsageError, ZosError


class MountError(ZosError):
    """Base of the mount layer's errors."""


class MountUsageError(MountError, UsageError):
    """We asked for an impossible mount (one already live in this process)."""


class InvalidFlist(MountUsageError):
    """The bytes given to mount are not a valid flist."""


class MountpointUnusable(MountUsageError):
    """The mountpoint is missing, not a directory, already a mount, or dead and stuck."""


class MountFailed(MountError):
    """The kernel or FUSE refused the mount."""


class ProtocolUsageError(MountError, UsageError):
    """WE tried to build an invalid agent/child message."""


class ProtocolRefused(MountError):
    """The PEER (agent or mount child) sent bytes we refuse: truncated, oversize, malformed."""
