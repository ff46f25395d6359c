"""The root of zosnode's error hierarchy, and the one way a usage error reaches the CLI.

Every layer defines its own error type below `ZosError`, split by whose fault
it is. Standard library only and no imports of ours, so that any layer (and
the stdlib-only start-up code) can import it without pulling anything in.

Usage errors: each layer's "the caller asked for something invalid" class
(`TrustUsageError`, `FetchUsageError`, ...; flist and bootmedia say
`...InputError`) also subclasses `UsageError`, keeping its place under its
layer's base. A layer cannot tell whether its caller is our code or a person;
a command can: it passes on what the user typed. So the one error policy
(`zosnode.entry.guarded`, for the CLI and `node run`) catches `UsageError`
and reports it as the user's mistake (one line on stderr, exit 2, `--debug`
for the traceback), and no command translates one by hand
(`tests/foundation/test_usage_errors.py`). Hence a usage error's message must
stand alone: it names the file, argument or field it is about.

Bad input bytes are a different thing. A peer's error (`Refused`, a
`FormatError`, a `FlistDataError`, a `CanonicalError`) blames whoever supplied
the bytes; on a node that is a hub, a mirror or a disk, never our caller. Only
the command knows that the bytes came from a file the user named, so it
catches the peer's error where it reads that file and raises `UserError`
naming the file. Anything else that reaches `main` is an internal failure
(exit 1).
"""


class ZosError(Exception):
    """Base of every error zosnode raises on purpose."""


class UsageError(ZosError):
    """The caller asked for something invalid; at the CLI, that caller is the user."""


class UserError(UsageError):
    """A mistake the CLI itself finds in what the user gave (an argument, a file)."""
