"""A FUSE mount child started before the network is up (apart: needs nothing of the data path)."""

import importlib
import os
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Sequence
from typing import IO


class Forked:
    """A child of `fork`: Popen's waits and signals, by pid (PID 1's reaper may reap it first)."""

    def __init__(self, pid: int, stdin: IO[bytes]) -> None:
        self.pid, self.stdin = pid, stdin
        self.returncode: int | None = None

    def poll(self, flags: int = os.WNOHANG) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, flags)
            except ChildProcessError:
                pid, status = self.pid, 0
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        return self.poll(0) or 0

    def terminate(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)


Child = subprocess.Popen[bytes] | Forked
# Children started ahead of their request, by command: (child, its report pipe's read end).
spares: dict[tuple[str, ...], tuple[Child, int]] = {}


def spawn(command: Sequence[str]) -> tuple[Child, int]:
    """In the agent's process group (a group signal reaches it), its crashes on our console."""
    read_fd, write_fd = os.pipe()
    try:
        popen = subprocess.Popen([*command, str(write_fd)], stdin=subprocess.PIPE,
                                 pass_fds=(write_fd,))
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)  # the child holds its end; EOF here means it is gone
    return popen, read_fd


def fork(command: Sequence[str]) -> None:
    """This process's own mount child (`command` names it for the mounter), forked before the
    network is up: it inherits trio and the data path imported, which a new interpreter took
    seconds of the one CPU to import under emulation. Only while we are one thread (a fork
    copies no other) and hold no secret; the first mount takes it, or starts its own."""
    if threading.active_count() > 1:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    fds: list[int] = []
    try:
        fds += os.pipe()  # the report pipe, then the request pipe
        fds += os.pipe()
        pid = os.fork()
    except OSError:  # the first mount starts its own, and reports why it cannot
        for fd in fds:
            os.close(fd)
        return
    read_fd, write_fd, request_r, request_w = fds
    if pid == 0:  # the child: what exec would leave, fds 0-2 and the report pipe
        code = 1
        try:
            os.dup2(request_r, 0)
            os.closerange(3, write_fd)
            os.closerange(write_fd + 1, os.sysconf("SC_OPEN_MAX"))
            code = importlib.import_module("zosnode.mount.child").main([str(write_fd)])
        except BaseException:  # noqa: BLE001 - on the console, as an interpreter would
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(write_fd)
    os.close(request_r)
    spares[tuple(command)] = (Forked(pid, os.fdopen(request_w, "wb")), read_fd)
