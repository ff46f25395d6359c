"""DHCPv4 messages (RFC 2131/2132), no sockets: every malformed packet is a PacketError
(pyroute2's codec accepts a truncated option list and raises untyped errors on hostile input)."""

import ipaddress
import struct
from dataclasses import dataclass, field
from enum import IntEnum

from zosnode.net.errors import NetUsageError, PacketError

BOOTREQUEST = 1
BOOTREPLY = 2
MAGIC = b"\x63\x82\x53\x63"
FIXED = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s4s")  # 240 bytes, magic included
# RFC 2131 clients need only accept 576 bytes; a padded Ethernet frame carries at most 1500.
MAX_MESSAGE = 1500
FLAG_BROADCAST = 0x8000


class Opt(IntEnum):
    PAD = 0
    SUBNET_MASK = 1
    ROUTER = 3
    DNS = 6
    DOMAIN_NAME = 15
    BROADCAST = 28
    REQUESTED_IP = 50
    LEASE_TIME = 51
    OVERLOAD = 52
    MESSAGE_TYPE = 53
    SERVER_ID = 54
    PARAM_LIST = 55
    MAX_SIZE = 57
    RENEWAL_T1 = 58
    REBINDING_T2 = 59
    CLIENT_ID = 61
    DOMAIN_SEARCH = 119
    CLASSLESS_ROUTE = 121
    END = 255


# Codes 1..6 in this order (RFC 2132 §9.6): those the node sends or accepts, no RELEASE, INFORM.
MsgType = IntEnum("MsgType", "DISCOVER OFFER REQUEST DECLINE ACK NAK")


@dataclass(frozen=True)
class Message:
    """One DHCP message; options are (code, value) pairs in wire order."""

    op: int
    xid: int
    chaddr: bytes
    options: tuple[tuple[int, bytes], ...]
    secs: int = 0
    flags: int = 0
    ciaddr: str = "0.0.0.0"
    yiaddr: str = "0.0.0.0"
    siaddr: str = "0.0.0.0"
    giaddr: str = "0.0.0.0"
    _index: dict[int, bytes] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.op not in (BOOTREQUEST, BOOTREPLY):
            raise NetUsageError(f"dhcp: op must be 1 or 2, not {self.op}")
        if not (0 <= self.xid < 2**32 and 0 <= self.secs < 2**16 and 0 <= self.flags < 2**16):
            raise NetUsageError("dhcp: xid, secs or flags out of range")
        if len(self.chaddr) != 6:
            raise NetUsageError("dhcp: chaddr must be a 6-byte Ethernet address")
        for addr in (self.ciaddr, self.yiaddr, self.siaddr, self.giaddr):
            ipaddress.IPv4Address(addr)  # raises ValueError on nonsense
        for code, value in self.options:
            if not 0 < code < 255 or len(value) > 255:
                raise NetUsageError(f"dhcp: option {code} is not encodable")
            # RFC 3396: repeated instances of one option are concatenated.
            self._index[code] = self._index.get(code, b"") + value

    def get(self, code: int) -> bytes | None:
        return self._index.get(code)

    @property
    def msg_type(self) -> MsgType | None:
        raw = self.get(Opt.MESSAGE_TYPE)
        if raw is None or len(raw) != 1 or raw[0] not in MsgType._value2member_map_:
            return None
        return MsgType(raw[0])

    def addr(self, code: int) -> str | None:
        raw = self.get(code)
        return str(ipaddress.IPv4Address(raw)) if raw is not None and len(raw) == 4 else None


@dataclass(frozen=True)
class Route:
    """One classless static route (RFC 3442): `gateway` None means on-link."""

    destination: str  # "a.b.c.d/n", host bits zero
    gateway: str | None

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.destination)


def classless_routes(raw: bytes) -> tuple[Route, ...]:
    """Option 121, strictly: any truncation, width over 32 or stray host bit is refused."""
    if len(raw) < 5:
        raise PacketError(f"dhcp: classless static routes of {len(raw)} bytes (at least 5)")
    out: list[Route] = []
    i = 0
    while i < len(raw):
        width = raw[i]
        if width > 32:
            raise PacketError(f"dhcp: classless static route of width {width}")
        significant = (width + 7) // 8
        end = i + 1 + significant + 4
        if end > len(raw):
            raise PacketError("dhcp: classless static route runs past the option")
        dest = raw[i + 1:i + 1 + significant] + bytes(4 - significant)
        try:
            net = ipaddress.IPv4Network((dest, width))
        except ValueError:
            raise PacketError(f"dhcp: classless static route {ipaddress.IPv4Address(dest)}/"
                              f"{width} has host bits set") from None
        gw = ipaddress.IPv4Address(raw[i + 1 + significant:end])
        out.append(Route(str(net), None if gw.is_unspecified else str(gw)))
        i = end
    return tuple(out)


def domain_search(raw: bytes) -> tuple[str, ...]:
    """Option 119 (RFC 3397), pointers only backwards: names as latin-1 text (one character
    per wire byte) for the caller to judge; only the encoding is checked here."""
    names: list[str] = []
    i = 0
    while i < len(raw):
        labels, i = _dns_name(raw, i)
        names.append(".".join(labels))
    return tuple(names)


def _dns_name(raw: bytes, start: int) -> tuple[list[str], int]:
    labels: list[str] = []
    pos, resume, floor, wire_len = start, None, start, 0
    while True:
        if pos >= len(raw):
            raise PacketError("dhcp: domain search name runs past the option")
        length = raw[pos]
        if length == 0:
            return labels, (pos + 1 if resume is None else resume)
        if length & 0xC0 == 0xC0:
            if pos + 1 >= len(raw):
                raise PacketError("dhcp: domain search pointer is cut short")
            target = ((length & 0x3F) << 8) | raw[pos + 1]
            # Strictly backwards, and before every name part seen so far: no loops.
            if target >= floor:
                raise PacketError("dhcp: domain search pointer does not point backwards")
            if resume is None:
                resume = pos + 2
            pos = floor = target
            continue
        if length & 0xC0:
            raise PacketError(f"dhcp: domain search label type {length >> 6:#x}")
        end = pos + 1 + length
        if end > len(raw):
            raise PacketError("dhcp: domain search label runs past the option")
        wire_len += 1 + length
        if wire_len > 255:
            raise PacketError("dhcp: domain search name longer than 255 bytes")
        labels.append(raw[pos + 1:end].decode("latin-1"))
        pos = end


def peek(data: bytes) -> tuple[int, bytes] | None:
    """(xid, chaddr) of a BOOTREPLY header, even when the rest does not decode."""
    if len(data) < FIXED.size or data[0] != BOOTREPLY:
        return None
    return int.from_bytes(data[4:8], "big"), data[28:34]


def encode(msg: Message) -> bytes:
    addresses = (ipaddress.IPv4Address(a).packed for a in (msg.ciaddr, msg.yiaddr, msg.siaddr,
                                                           msg.giaddr))
    out = FIXED.pack(msg.op, 1, 6, 0, msg.xid, msg.secs, msg.flags, *addresses,
                     msg.chaddr + bytes(10), bytes(64), bytes(128), MAGIC)
    out += b"".join(bytes((code, len(value))) + value for code, value in msg.options)
    out += bytes((Opt.END,))
    # Some relays drop BOOTP packets shorter than the historical 300 bytes.
    return out + bytes(max(0, 300 - len(out)))


def _walk(region: bytes, where: str) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(region):
        code = region[i]
        if code == Opt.PAD:
            i += 1
            continue
        if code == Opt.END:
            return out
        if i + 1 >= len(region):
            raise PacketError(f"dhcp: option {code} in {where} has no length byte")
        end = i + 2 + region[i + 1]
        if end > len(region):
            raise PacketError(f"dhcp: option {code} in {where} runs past the end")
        out.append((code, region[i + 2:end]))
        i = end
    raise PacketError(f"dhcp: no END in {where}")


def decode(data: bytes) -> Message:
    """Decode one message; padding after END is allowed (RFC 2131 §2)."""
    if len(data) > MAX_MESSAGE:
        raise PacketError(f"dhcp: message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    if len(data) < FIXED.size:
        raise PacketError(f"dhcp: message of {len(data)} bytes is shorter than the header")
    (op, htype, hlen, _hops, xid, secs, flags, ci, yi, si, gi, chaddr, sname, bfile,
     magic) = FIXED.unpack_from(data)
    if magic != MAGIC:
        raise PacketError("dhcp: bad magic cookie")
    if htype != 1 or hlen != 6:
        raise PacketError("dhcp: not an Ethernet hardware address")
    options = _walk(data[FIXED.size:], "options")
    overload = [v for c, v in options if c == Opt.OVERLOAD]
    if overload:
        if len(overload) != 1 or len(overload[0]) != 1 or overload[0][0] not in (1, 2, 3):
            raise PacketError("dhcp: bad option overload")
        # RFC 2131 §4.1: file first, then sname.
        for bit, region, where in ((1, bfile, "file"), (2, sname, "sname")):
            if overload[0][0] & bit:
                options += _walk(region, f"overloaded {where} field")
    try:
        return Message(op, xid, chaddr[:6], tuple(options), secs, flags,
                       *(str(ipaddress.IPv4Address(a)) for a in (ci, yi, si, gi)))
    except NetUsageError as exc:
        raise PacketError(str(exc)) from None
