"""The root of zosnode's errors, and the one way a usage error reaches the CLI.

Each layer has its own error type below `ZosError`, split by whose fault it is.
Stdlib only, no imports of ours: any layer (and the stdlib-only start-up) may
import it. Each layer's "the caller asked for something invalid" class
(`FetchUsageError`, ...; flist and bootmedia say `...InputError`) also
subclasses `UsageError`. A layer cannot tell whether its caller is our code or
a person; a command can, so the one policy (`zosnode.entry.guarded`) reports a
`UsageError` as the user's mistake (one line, exit 2, `--debug` for the
traceback) and no command translates one by hand
(`tests/foundation/test_usage_errors.py`): its message names the file,
argument or field. A peer's error (`Refused`, `FormatError`, `CanonicalError`,
...) blames whoever supplied the bytes (on a node a hub, a mirror or a disk);
only a command knows they came from a file the user named, and raises
`UserError` naming it. Anything else reaching `main` is internal (exit 1).
"""


class ZosError(Exception):
    """Base of every error zosnode raises on purpose."""


class UsageError(ZosError):
    """The caller asked for something invalid; at the CLI, that caller is the user."""


class UserError(UsageError):
    """A mistake the CLI itself finds in what the user gave (an argument, a file)."""
