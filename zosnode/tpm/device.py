"""The thin shell around `codec`: commands to a TPM within a deadline, and the node's
secret derived in it (docs/identity.md). Tests use swtpm's socket (`tests/tpm/swtpm.py`)."""

import contextlib
import os
import select
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from zosnode.tpm import codec
from zosnode.tpm.errors import TpmDeviceError, TpmError, TpmResponseError

TPM_DEVICE = Path("/dev/tpmrm0")
TIMEOUT_S = 10.0  # a CreatePrimary of an HMAC key takes milliseconds; RSA would take seconds
RETRIES = 3  # for the warnings that ask for the same command again

T = TypeVar("T")


class Transport(Protocol):
    def transact(self, command: bytes, timeout_s: float) -> bytes: ...

    def close(self) -> None: ...


class Device:
    def __init__(self, path: Path = TPM_DEVICE) -> None:
        try:
            # Non-blocking: the kernel runs the command in the background; poll() bounds the wait.
            self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise TpmDeviceError(f"{path}: {exc.strerror}") from None
        self.path = path

    def transact(self, command: bytes, timeout_s: float) -> bytes:
        try:
            if os.write(self.fd, command) != len(command):
                raise TpmDeviceError(f"{self.path}: short write")
            poller = select.poll()
            poller.register(self.fd, select.POLLIN)
            if not poller.poll(int(timeout_s * 1000)):
                raise TpmDeviceError(f"{self.path}: no response within {timeout_s:.0f} s")
            return os.read(self.fd, codec.MAX_RESPONSE + 1)
        except OSError as exc:
            raise TpmDeviceError(f"{self.path}: {exc.strerror}") from None

    def close(self) -> None:
        os.close(self.fd)


def call(tpm: Transport, command: bytes, parse: Callable[[bytes], T],
         timeout_s: float = TIMEOUT_S) -> T:
    for attempt in range(RETRIES + 1):
        try:
            return parse(tpm.transact(command, timeout_s))
        except TpmResponseError as exc:
            if exc.code not in codec.RETRYABLE or attempt == RETRIES:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def derive(tpm: Transport, label: bytes) -> bytes:
    """HMAC-SHA256(the identity primary key, label) in the TPM; the key lives only during this."""
    primary = call(tpm, codec.create_primary_hmac(), codec.parse_create_primary)
    try:
        digest = call(tpm, codec.hmac(primary.handle, label), codec.parse_hmac)
    except BaseException:
        with contextlib.suppress(TpmError):
            call(tpm, codec.flush_context(primary.handle), codec.parse_flush_context)
        raise
    call(tpm, codec.flush_context(primary.handle), codec.parse_flush_context)
    return digest


def manufacturer(tpm: Transport) -> str:
    return call(tpm, codec.get_manufacturer(), codec.parse_manufacturer)
