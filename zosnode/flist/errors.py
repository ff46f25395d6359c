"""The flist layer's errors.

`FlistError` is the one type this layer raises. Its two branches say whose
fault it is: `FlistInputError` means the caller asked for something wrong (a
path that is not in the image, a source that cannot be read); `FlistDataError`
means bytes handed to us (an flist, a block, an archive) are wrong, which on a
node means a hub, mirror or disk lied. On the CLI both are the user's: an
input error is a `UsageError` and reaches the user on its own; a data error
is about a file they named, which the command says (`zosnode.errors`).
"""

from __future__ import annotations

from zosnode.errors import UsageError, ZosError


class FlistError(ZosError):
    """Anything the flist layer refuses."""


class FlistInputError(FlistError, UsageError):
    """The caller's request cannot be met (bad argument, unreadable source)."""


class FlistDataError(FlistError):
    """Bytes we were given are wrong; the peer, the store or the archive is at fault."""


class FormatError(FlistDataError):
    """An encoded flist that does not follow the spec or breaks a limit."""


class UnsupportedVersionError(FormatError):
    """An flist whose major format version this code does not know."""


class IntegrityError(FlistDataError):
    """A block whose bytes do not match its id, or do not decode as promised."""


class UnsafeTargetError(FlistInputError):
    """Extraction would write somewhere it must not (outside or over existing files)."""
