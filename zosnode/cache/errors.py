"""The cache layer's errors."""

from zosnode.errors import UsageError, ZosError


class CacheError(ZosError):
    """Base of the cache layer's errors."""


class CacheUsageError(CacheError, UsageError):
    """We configured or called the cache wrongly (bad size, bad id)."""


class CorruptEntry(CacheError):
    """A cached entry failed its checksum: the local medium changed it."""
