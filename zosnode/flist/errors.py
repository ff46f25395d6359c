"""The flist layer's errors; two branches say whose fault it is (on the CLI, both the user's)."""

from zosnode.errors import UsageError, ZosError


class FlistError(ZosError):
    """Anything the flist layer refuses."""


class FlistInputError(FlistError, UsageError):
    """The caller's request cannot be met (bad argument, unreadable source)."""


class FlistDataError(FlistError):
    """Bytes we were given are wrong: on a node, a hub, mirror or disk lied."""


class FormatError(FlistDataError):
    """An encoded flist that does not follow the spec or breaks a limit."""


class UnsupportedVersionError(FormatError):
    """An flist whose major format version this code does not know."""


class IntegrityError(FlistDataError):
    """A block whose bytes do not match its id, or do not decode as promised."""


class UnsafeTargetError(FlistInputError):
    """Extraction would write somewhere it must not (outside or over existing files)."""
