"""Size-capped, hash-checked downloads of pinned content (sans-IO).

The manifest states each flist's size and id. A download is fed chunk by
chunk and refused the moment it exceeds the stated size (endless data), so a
malicious mirror cannot make the node buffer more than the signer allowed;
at the end the bytes must hash to the pinned id (mix-and-match, wrong
software, malicious mirrors).
"""

from __future__ import annotations

import hashlib

from zosnode.trust.errors import OversizeError, Refused, TrustUsageError
from zosnode.trust.manifest import FlistPin


class HashMismatchError(Refused):
    """Bytes that do not hash to the id the manifest pins."""


class BoundedDownload:
    def __init__(self, expected_id: str, max_size: int, what: str) -> None:
        if max_size < 0:
            raise TrustUsageError("max_size must not be negative")
        self._expected = expected_id
        self._max = max_size
        self._what = what
        self._hash = hashlib.blake2b(digest_size=32)
        self._chunks: list[bytes] = []
        self._size = 0
        self._done = False

    @property
    def received(self) -> int:
        return self._size

    def feed(self, chunk: bytes) -> None:
        if self._done:
            raise TrustUsageError(f"{self._what}: feed after finish")
        self._size += len(chunk)
        if self._size > self._max:
            raise OversizeError(
                f"{self._what}: more than the {self._max} bytes the manifest states"
            )
        self._hash.update(chunk)
        self._chunks.append(chunk)

    def finish(self) -> bytes:
        self._done = True
        got = self._hash.hexdigest()
        if got != self._expected:
            raise HashMismatchError(
                f"{self._what}: {self._size} bytes hash to {got[:16]}..., "
                f"the manifest pins {self._expected[:16]}..."
            )
        return b"".join(self._chunks)


def for_pin(pin: FlistPin) -> BoundedDownload:
    return BoundedDownload(pin.id, pin.size, f"flist {pin.name}")


def verify_pinned(pin: FlistPin, data: bytes) -> bytes:
    """Refuse `data` unless it is within the pinned size and hashes to the pinned id."""
    dl = for_pin(pin)
    dl.feed(data)
    return dl.finish()
