"""The device shell's mechanics on a stand-in character device (a raw pty):
one write of the command, one read of the response, a deadline on the wait."""

from __future__ import annotations

import os
import threading
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tpm import responses as r
from zosnode.tpm import codec, device
from zosnode.tpm.errors import TpmDeviceError


@pytest.fixture
def pty() -> Iterator[tuple[int, Path]]:
    """(the controlling side, the path of a raw terminal standing in for /dev/tpmrm0)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        yield master, Path(os.ttyname(slave))
    finally:
        os.close(slave)
        os.close(master)


def test_a_command_goes_out_whole_and_the_response_comes_back(pty: tuple[int, Path]) -> None:
    master, path = pty
    command = codec.hmac(0x80000000, b"zosnode node identity v1")

    def tpm() -> None:
        got = b""
        while len(got) < len(command):
            got += os.read(master, 4096)
        assert got == command
        time.sleep(0.05)
        os.write(master, r.hmac())

    worker = threading.Thread(target=tpm)
    worker.start()
    dev = device.Device(path)
    try:
        assert device.call(dev, command, codec.parse_hmac, timeout_s=5) == r.DIGEST
    finally:
        dev.close()
        worker.join(5)


def test_a_silent_device_fails_at_the_deadline(pty: tuple[int, Path]) -> None:
    dev = device.Device(pty[1])
    try:
        t0 = time.monotonic()
        with pytest.raises(TpmDeviceError, match="no response within"):
            dev.transact(codec.flush_context(0x80000000), timeout_s=0.3)
        took = time.monotonic() - t0
    finally:
        dev.close()
    assert 0.25 < took < 5, took


def test_a_missing_device_is_a_device_error(tmp_path: Path) -> None:
    with pytest.raises(TpmDeviceError, match="No such file"):
        device.Device(tmp_path / "tpmrm0")
