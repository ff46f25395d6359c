"""swtpm processes for tests and the benchmark: started in a directory of the
caller's, stopped by their own pid.

`server` gives the raw TPM data channel on a Unix socket (`SwtpmSocket`);
`for_qemu` gives the control channel QEMU's `-tpmdev emulator` wants. The TPM
state (its seeds) lives in `state`: the same directory is the same TPM, a new
one is a factory-fresh TPM.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SWTPM = "swtpm"
START_S = 10.0


def missing() -> str | None:
    """Why swtpm tests cannot run here, or None."""
    if shutil.which(SWTPM) is None:
        return "needs swtpm (Debian packages swtpm and swtpm-tools)"
    return None


def _run(argv: list[str], sock: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    deadline = time.monotonic() + START_S
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"swtpm did not start: {log.read_text(errors='replace')}")
        time.sleep(0.02)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@contextmanager
def server(state: Path, sock: Path) -> Iterator[Path]:
    """A started TPM (not-need-init, startup-clear) answering on `sock`."""
    state.mkdir(parents=True, exist_ok=True)
    sock.unlink(missing_ok=True)
    proc = _run([SWTPM, "socket", "--tpm2", "--tpmstate", f"dir={state}",
                 "--server", f"type=unixio,path={sock}",
                 "--flags", "not-need-init,startup-clear"], sock, state.parent / "swtpm.log")
    try:
        yield sock
    finally:
        stop(proc)


@contextmanager
def for_qemu(state: Path, ctrl: Path) -> Iterator[Path]:
    """A TPM for `-chardev socket,path=ctrl -tpmdev emulator`; QEMU initialises it."""
    state.mkdir(parents=True, exist_ok=True)
    ctrl.unlink(missing_ok=True)
    proc = _run([SWTPM, "socket", "--tpm2", "--tpmstate", f"dir={state}",
                 "--ctrl", f"type=unixio,path={ctrl}"], ctrl, state.parent / "swtpm.log")
    try:
        yield ctrl
    finally:
        stop(proc)
