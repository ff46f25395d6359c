"""The root of zosnode's errors, and the one way a usage error reaches the CLI.

Stdlib only, no imports of ours, so any layer (and the start-up) may import it.
Each layer's error types sit below `ZosError`, split by whose fault it is; its
"the caller asked for something invalid" class also subclasses `UsageError`,
which the one policy (`zosnode.entry.guarded`) shows as the user's mistake (one
line, exit 2), as only a command knows its caller is a person: so no command
translates one by hand (`tests/foundation/test_usage_errors.py`), and its message
names the file, argument or field. A peer's error (`Refused`, `CanonicalError`,
...) blames whoever supplied the bytes (on a node: a hub, a mirror, a disk); a
command that read them from a file the user named raises `UserError` naming it.
Anything else reaching `main` is internal (exit 1).
"""


class ZosError(Exception):
    """Base of every error zosnode raises on purpose."""


class UsageError(ZosError):
    """The caller asked for something invalid; at the CLI, that caller is the user."""


class UserError(UsageError):
    """A mistake the CLI itself finds in what the user gave (an argument, a file)."""
