"""The root of zosnode's errors; stdlib only, so any layer (and the start-up) may import it.

Each layer's errors split by whose fault: its "caller asked for something invalid" class
also subclasses `UsageError`, which `zosnode.entry.guarded` alone shows as the user's
mistake (one line, exit 2; tests/foundation/test_usage_errors.py). A peer's error blames
whoever supplied the bytes; a command that read them from a user's file raises `UserError`
naming it. Anything else reaching `main` is internal (exit 1)."""


class ZosError(Exception):
    """Base of every error zosnode raises on purpose."""


class UsageError(ZosError):
    """The caller asked for something invalid; at the CLI, that caller is the user."""


class UserError(UsageError):
    """A mistake the CLI itself finds in what the user gave (an argument, a file)."""
