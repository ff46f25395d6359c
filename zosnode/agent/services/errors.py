"""Errors of the service layer: our own mistakes apart from the manifest's."""

from zosnode.errors import UsageError, ZosError


class ServiceError(ZosError):
    """Base of the service layer's errors."""


class SupervisorUsageError(ServiceError, UsageError):
    """The caller drove the supervisor wrongly."""


class ExecRefused(ServiceError):
    """The release asked to exec a file outside every verified mount."""
