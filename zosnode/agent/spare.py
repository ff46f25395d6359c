"""A FUSE mount child started before the network is up (apart: needs nothing of the data path)."""

import contextlib
import os
import subprocess
from collections.abc import Sequence

# Children started ahead of their request, by command: (child, its report pipe's read end).
spares: dict[tuple[str, ...], tuple[subprocess.Popen[bytes], int]] = {}


def spawn(command: Sequence[str]) -> tuple[subprocess.Popen[bytes], int]:
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


def start(command: Sequence[str]) -> None:
    """It imports the data path while the agent waits for DHCP; the first mount takes it."""
    with contextlib.suppress(OSError):  # the first mount starts its own, and reports why it cannot
        spares[tuple(command)] = spawn(command)
