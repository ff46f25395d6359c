"""The exec allow-list (docs/node-run.md): a service starts only a file whose real path is in a
verified mount, or `python` (the artifact's interpreter: its path differs per machine) running a
script from a mount, isolated (`-I`); `-c` or `-m` would run code no flist describes: refused."""

import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

from zosnode.agent.services.errors import ExecRefused

INTERPRETER = "python"


def _inside(real: str, mounts: Sequence[str]) -> bool:
    return any(real != m and os.path.commonpath([real, m]) == m for m in mounts)


def _locate(arg: str, home: Path, mounts: Sequence[str], what: str) -> str:
    real = os.path.realpath(os.path.join(home, arg))  # an absolute `arg` replaces `home`
    if not _inside(real, mounts):
        raise ExecRefused(f"{what} {arg!r} resolves to {real}, outside the verified mounts")
    try:
        st = os.stat(real)
    except OSError as exc:
        raise ExecRefused(f"{what} {arg!r}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ExecRefused(f"{what} {arg!r} is not a regular file")
    return real


def resolve_exec(argv: Sequence[str], *, home: Path, mounts: Sequence[Path]) -> tuple[str, ...]:
    """The argv to exec, or ExecRefused; a relative path resolves against `home`, its mount."""
    if not argv or not argv[0]:
        raise ExecRefused("empty argv")
    roots = [os.path.realpath(m) for m in mounts]
    interp = os.path.realpath(sys.executable)
    first = argv[0]
    if os.path.realpath(os.path.join(home, first)) == interp and not _inside(interp, roots):
        first = INTERPRETER  # the interpreter by its own path
    if first == INTERPRETER:
        if len(argv) < 2 or argv[1].startswith("-"):
            raise ExecRefused("the interpreter may only run a script from a verified mount "
                              f"(got {list(argv[:2])!r})")
        return (interp, "-I", _locate(argv[1], home, roots, "script"), *argv[2:])
    real = _locate(first, home, roots, "program")
    if not os.access(real, os.X_OK):
        raise ExecRefused(f"program {first!r} is not executable")
    return (real, *argv[1:])
