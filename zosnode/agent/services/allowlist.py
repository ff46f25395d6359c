"""The exec allow-list: a service may only start a file from a verified mount.

The check is on the resolved real path (symlinks followed), so a link inside
a mount that points outside it is refused. One exception, and only one: the
artifact's own interpreter may run a *script* whose real path is inside a
mount. It is named `python` in a manifest's argv (the interpreter's path
differs between a workstation and the initramfs) and runs in isolated mode
(`-I`: no PYTHON* environment, no user site); interpreter options such as
`-c` or `-m` are refused because they would run code no flist describes.
"""

from __future__ import annotations

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
    path = arg if os.path.isabs(arg) else os.path.join(home, arg)
    real = os.path.realpath(path)
    if not _inside(real, mounts):
        raise ExecRefused(f"{what} {arg!r} resolves to {real}, outside the verified mounts")
    try:
        st = os.stat(real)
    except OSError as exc:
        raise ExecRefused(f"{what} {arg!r}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ExecRefused(f"{what} {arg!r} is not a regular file")
    return real


def resolve_exec(
    argv: Sequence[str],
    *,
    home: Path,
    mounts: Sequence[Path],
    interpreter: str = sys.executable,
) -> tuple[str, ...]:
    """The argv to exec for a service's `argv`, or `ExecRefused`.

    `home` is the mount of the service's own flist (relative paths resolve
    against it); `mounts` are every verified mount of the release.
    """
    if not argv or not argv[0]:
        raise ExecRefused("empty argv")
    roots = [os.path.realpath(m) for m in mounts]
    interp = os.path.realpath(interpreter)
    first = argv[0]
    if first != INTERPRETER:
        path = first if os.path.isabs(first) else os.path.join(home, first)
        if os.path.realpath(path) == interp and not _inside(interp, roots):
            first = INTERPRETER
    if first == INTERPRETER:
        if len(argv) < 2 or argv[1].startswith("-"):
            raise ExecRefused(
                "the interpreter may only run a script from a verified mount "
                f"(got {list(argv[:2])!r})"
            )
        script = _locate(argv[1], home, roots, "script")
        return (interp, "-I", script, *argv[2:])
    real = _locate(first, home, roots, "program")
    if not os.access(real, os.X_OK):
        raise ExecRefused(f"program {first!r} is not executable")
    return (real, *argv[1:])
