"""swtpm processes for tests and the benchmark: started in a directory of the
caller's, stopped by their own pid.

`server` gives the raw TPM data channel on a Unix socket (`SwtpmSocket`, a
`zosnode.tpm.device.Transport`);
`for_qemu` gives the control channel QEMU's `-tpmdev emulator` wants. The TPM
state (its seeds) lives in `state`: the same directory is the same TPM, a new
one is a factory-fresh TPM.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from zosnode.tpm import codec
from zosnode.tpm.device import TIMEOUT_S
from zosnode.tpm.errors import TpmDeviceError

SWTPM = "swtpm"
START_S = 10.0


def missing() -> str | None:
    """Why swtpm tests cannot run here, or None."""
    if shutil.which(SWTPM) is None:
        return "needs swtpm (Debian packages swtpm and swtpm-tools)"
    return None


def _listening(sock: Path) -> bool:
    """Whether a socket listens at `sock` (it exists between bind and listen too),
    without connecting: a connection to the control channel would be a client."""
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[7] == str(sock) and int(fields[3], 16) & 0x10000:
            return True
    return False


def _run(argv: list[str], sock: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    deadline = time.monotonic() + START_S
    while not _listening(sock):
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


class SwtpmSocket:
    """swtpm's data channel on a Unix socket: a response is read to the size in its header."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(TIMEOUT_S)
            self.sock.connect(str(path))
        except OSError as exc:
            self.sock.close()
            raise TpmDeviceError(f"{path}: {exc}") from None
        self.path = path

    def transact(self, command: bytes, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        try:
            self.sock.sendall(command)
            data = b""
            want = codec.HEADER.size
            while len(data) < want:
                self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = self.sock.recv(min(want - len(data), codec.MAX_RESPONSE))
                if not chunk:
                    raise TpmDeviceError(f"{self.path}: swtpm closed the connection")
                data += chunk
                if len(data) >= codec.HEADER.size:
                    want = min(codec.HEADER.unpack_from(data)[1], codec.MAX_RESPONSE + 1)
            return data
        except OSError as exc:
            raise TpmDeviceError(f"{self.path}: {exc or 'timed out'}") from None

    def close(self) -> None:
        self.sock.close()
