"""QEMU virtual machines for boot tests: software emulation, serial console to a file.

Every VM has a hard deadline and is killed by its own PID; a wait that times
out fails the test with the tail of the console log attached.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

QEMU = "qemu-system-x86_64"
POLL_S = 0.2
LOG_TAIL = 120  # console lines attached to a failure


def require_qemu() -> None:
    if shutil.which(QEMU) is None:
        pytest.skip(f"needs {QEMU} (Debian package qemu-system-x86)")


def base_argv(console: Path, memory_mb: int = 768) -> list[str]:
    # -nographic also makes SeaBIOS mirror the firmware and iPXE text to the serial port.
    return [QEMU, "-accel", "tcg", "-m", str(memory_mb), "-smp", "1", "-nographic",
            "-monitor", "none", "-serial", f"file:{console}", "-no-reboot", "-nic", "none"]


def direct_boot_argv(kernel: Path, initrd: Path, append: str) -> list[str]:
    return ["-kernel", str(kernel), "-initrd", str(initrd), "-append", append]


def tap_nic_argv(tap: str, mac: str = "52:54:00:12:34:56") -> list[str]:
    return ["-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=n0,mac={mac}"]


def disk_argv(*disks: Path | tuple[Path, str]) -> list[str]:
    """Raw virtio disks, in order (vda, vdb, ...); `(path, "ro")` attaches one read-only."""
    out = []
    for d in disks:
        path, mode = d if isinstance(d, tuple) else (d, "rw")
        ro = ",readonly=on" if mode == "ro" else ""
        out += ["-drive", f"file={path},format=raw,if=virtio,cache=unsafe{ro}"]
    return out


def tpm_argv(ctrl: Path) -> list[str]:
    """A TPM 2.0 on the TIS interface, emulated by `swtpm socket --ctrl type=unixio,path=ctrl`."""
    return ["-chardev", f"socket,id=chrtpm,path={ctrl}",
            "-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", "tpm-tis,tpmdev=tpm0"]


class Vm:
    """A running QEMU; use `wait_for` to follow its console."""

    def __init__(self, argv: Sequence[str], console: Path, deadline_s: float) -> None:
        self.console = console
        self.started = time.monotonic()
        self.deadline = self.started + deadline_s
        console.write_bytes(b"")
        self.stderr_path = console.with_suffix(".stderr")
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL,
                                     stdout=self._stderr, stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.console.read_bytes().decode("utf-8", "replace")

    def tail(self, lines: int = LOG_TAIL) -> str:
        err = self.stderr_path.read_bytes().decode("utf-8", "replace").strip()
        out = "\n".join(self.text().splitlines()[-lines:])
        return out + (f"\n--- qemu stderr ---\n{err}" if err else "")

    def wait_for(self, pattern: str, timeout_s: float,
                 start: int = 0) -> tuple[re.Match[str], float]:
        """The first match of `pattern` in the console after offset `start`, and
        the seconds since QEMU started; fails the test on timeout or exit."""
        rx = re.compile(pattern)
        until = min(self.deadline, time.monotonic() + timeout_s)
        while True:
            m = rx.search(self.text(), start)
            if m:
                return m, time.monotonic() - self.started
            if self.proc.poll() is not None:
                pytest.fail(f"QEMU exited ({self.proc.returncode}) before {pattern!r}:\n"
                            f"{self.tail()}")
            if time.monotonic() > until:
                pytest.fail(f"no {pattern!r} on the console within {timeout_s:.0f} s:\n"
                            f"{self.tail()}")
            time.sleep(POLL_S)

    def wait_exit(self, timeout_s: float) -> int:
        try:
            left = min(timeout_s, self.deadline - time.monotonic())
            return self.proc.wait(timeout=max(0.1, left))
        except subprocess.TimeoutExpired:
            pytest.fail(f"QEMU did not exit within {timeout_s:.0f} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._stderr.close()


@contextmanager
def vm(argv: Sequence[str], console: Path, deadline_s: float = 240) -> Iterator[Vm]:
    require_qemu()
    machine = Vm(argv, console, deadline_s)
    try:
        yield machine
    finally:
        machine.stop()


def nsexec_argv(ns: str, argv: Sequence[str]) -> list[str]:
    # `ip netns exec` execs QEMU in place: the PID we hold is QEMU's.
    return ["ip", "netns", "exec", ns, *argv]
