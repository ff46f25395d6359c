"""Netlink's framing (sans-IO), for the node's rtnetlink and nftables requests and the kernel's
answers. A message is a 16-byte header and a payload, an attribute a 4-byte header and a
value, each padded to 4 bytes; a length that overruns its buffer is refused, never read short."""

import struct
import sys
from dataclasses import dataclass
from typing import Literal

from zosnode.net.errors import PacketError

NLMSG_ERROR, NLMSG_DONE = 2, 3
REQUEST, ACK, REPLACE, CREATE, APPEND, DUMP = 0x1, 0x4, 0x100, 0x400, 0x800, 0x300
NESTED = 0x8000
_HEAD = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_ATTR = struct.Struct("=HH")  # length, type


@dataclass(frozen=True)
class NetlinkMessage:
    kind: int
    flags: int
    seq: int
    payload: bytes


def message(kind: int, flags: int, seq: int, payload: bytes) -> bytes:
    return _HEAD.pack(_HEAD.size + len(payload), kind, flags, seq, 0) + payload


def attr(kind: int, value: bytes) -> bytes:
    size = _ATTR.size + len(value)
    return _ATTR.pack(size, kind) + value + bytes(-size % 4)


def nest(kind: int, *attrs: bytes) -> bytes:
    return attr(kind | NESTED, b"".join(attrs))


def strz(kind: int, text: str) -> bytes:
    return attr(kind, text.encode() + b"\0")


def u32(kind: int, value: int, order: Literal["little", "big"] = sys.byteorder) -> bytes:
    return attr(kind, value.to_bytes(4, order))


def _records(data: bytes, head: struct.Struct, what: str) -> list[tuple[int, tuple[int, ...]]]:
    out, at = [], 0
    while at < len(data):
        if len(data) - at < head.size:
            raise PacketError(f"netlink: {len(data) - at} bytes left at {at}, less than a {what}")
        fields = head.unpack_from(data, at)
        if not head.size <= fields[0] <= len(data) - at:
            raise PacketError(f"netlink: {what} length {fields[0]} at {at} overruns {len(data)}")
        out.append((at, fields))
        at += fields[0] + (-fields[0] % 4)
    return out


def parse(data: bytes) -> list[NetlinkMessage]:
    return [NetlinkMessage(kind, flags, seq, data[at + _HEAD.size : at + size])
            for at, (size, kind, flags, seq, _port) in _records(data, _HEAD, "message header")]


def attrs(data: bytes) -> dict[int, bytes]:
    """Values by attribute type (its flag bits cleared); the first of a type repeated."""
    out: dict[int, bytes] = {}
    for at, (size, kind) in _records(data, _ATTR, "attribute header"):
        out.setdefault(kind & 0x3FFF, data[at + _ATTR.size : at + size])
    return out


def text(value: bytes | None) -> str | None:
    return None if value is None else value.split(b"\0", 1)[0].decode(errors="replace")


def error_of(msg: NetlinkMessage) -> int:
    """The errno an NLMSG_ERROR carries; 0 is an ack."""
    if len(msg.payload) < 4:
        raise PacketError(f"netlink: an error message of {len(msg.payload)} bytes")
    return -int.from_bytes(msg.payload[:4], sys.byteorder, signed=True)
