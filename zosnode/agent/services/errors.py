"""Errors of the service layer.

`SupervisorUsageError` is our own mistake (an event for a service the release
does not have, a time that runs backwards). `ExecRefused` is the manifest's: it
asked to run something that does not live in a verified flist mount.
"""

from __future__ import annotations

from zosnode.errors import UsageError, ZosError


class ServiceError(ZosError):
    """Base of the service layer's errors."""


class SupervisorUsageError(ServiceError, UsageError):
    """The caller drove the supervisor wrongly."""


class ExecRefused(ServiceError):
    """The release asked to exec a file outside every verified mount."""
