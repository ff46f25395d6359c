"""The external programs boot media are built with (xorriso, mtools, objcopy,
sbsign, openssl, ...): run one to completion, or say which package is missing.
One failure type for all of them: `BuildInputError` with the tool's last
line of stderr."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from zosnode.bootmedia.errors import BuildInputError

TIMEOUT_S = 300


def need(tool: str, package: str) -> None:
    if shutil.which(tool) is None:
        raise BuildInputError(f"the {tool} command is missing: install the Debian package "
                              f"{package}")


def run(argv: list[str], *, cwd: Path | None = None, timeout_s: float = TIMEOUT_S) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildInputError(f"{argv[0]}: {exc}") from exc
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        raise BuildInputError(f"{argv[0]} failed: {last}")
