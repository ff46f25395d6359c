"""One error type for the boot-media layer, split by whose fault it is."""

from __future__ import annotations

from zosnode.errors import UsageError, ZosError


class BootMediaError(ZosError):
    """Base of every boot-media failure."""


class BuildInputError(BootMediaError, UsageError):
    """What the user gave us is wrong: a missing file, a hash that differs, a bad name."""


class FormatError(BootMediaError):
    """Bytes we were asked to read (a cpio archive, an ELF file) are malformed."""


class BuildError(BootMediaError):
    """We asked for something impossible: an invalid entry, a conflicting path."""
