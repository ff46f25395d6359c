"""Well-formed TPM responses built field by field (TCG Part 3): codec tests, fuzz seeds."""

from __future__ import annotations

import struct

HANDLE = 0x80000000
DIGEST = bytes(range(32))
NAME = b"\x00\x0b" + bytes(range(32, 64))
PW_OK = b"\x00\x00" + b"\x00" + b"\x00\x00"  # empty nonce, attributes, empty HMAC


def response(params: bytes, *, handles: bytes = b"", auth: bytes | None = None,
             rc: int = 0) -> bytes:
    """A response; with `auth` the parameters get their size and the session area follows."""
    tag = 0x8001 if auth is None else 0x8002
    body = handles + (params if auth is None else struct.pack(">I", len(params)) + params + auth)
    return struct.pack(">HII", tag, 10 + len(body), rc) + body


def error(rc: int, tag: int = 0x8001) -> bytes:
    return struct.pack(">HII", tag, 10, rc)


def create_primary(handle: int = HANDLE, name: bytes = NAME, extra: bytes = b"") -> bytes:
    params = (b"\x00\x02\xaa\xbb"  # outPublic (opaque to us)
              + b"\x00\x03cd1"  # creationData
              + b"\x00\x02\x01\x02"  # creationHash
              + b"\x80\x21\x40\x00\x00\x01" + b"\x00\x01\x07"  # creationTicket
              + struct.pack(">H", len(name)) + name + extra)
    return response(params, handles=struct.pack(">I", handle), auth=PW_OK)


def hmac(digest: bytes = DIGEST, auth: bytes = PW_OK) -> bytes:
    return response(struct.pack(">H", len(digest)) + digest, auth=auth)


def flush() -> bytes:
    return response(b"")


def manufacturer(words: tuple[bytes, ...] = (b"IBM\0", b"SW  ", b" TPM", b"\0\0\0\0",
                                             b"\0\0\0\0"), capability: int = 6) -> bytes:
    props = b"".join(struct.pack(">I", 0x105 + i) + w for i, w in enumerate(words))
    return response(b"\x00" + struct.pack(">II", capability, len(words)) + props)


class Scripted:
    """A transport answering from a list, recording what it was sent."""

    def __init__(self, *answers: bytes) -> None:
        self.answers, self.sent = list(answers), []  # type: list[bytes], list[bytes]
        self.closed = False

    def transact(self, command: bytes, timeout_s: float) -> bytes:
        self.sent.append(command)
        return self.answers.pop(0)

    def close(self) -> None:
        self.closed = True
