"""The root of zosnode's error hierarchy.

Every layer defines its own error type below `ZosError`. The CLI maps any
`UserError` (a mistake in what the user gave us: a missing file, a bad
argument, input that does not parse) to exit code 2 with one line on stderr;
any other exception is an internal failure (exit 1).
"""


class ZosError(Exception):
    """Base of every error zosnode raises on purpose."""


class UserError(ZosError):
    """The user gave us something wrong; the message names what."""
