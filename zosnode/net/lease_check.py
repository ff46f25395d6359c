"""Is an OFFER or ACK usable as a whole? Anyone on the segment can answer DHCP: what the
kernel would refuse, or what would hurt the node or its neighbours, is refused here before it
reaches netlink (docs/network-bringup.md)."""

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from zosnode.net import dhcp_wire as wire
from zosnode.net.dhcp_wire import Message, MsgType, Opt, Route
from zosnode.net.errors import PacketError

IPv4 = ipaddress.IPv4Address
MIN_PREFIX = 8  # a wider subnet would put a quarter of the Internet on-link
MAX_DNS = 3  # glibc reads at most 3 nameservers
MAX_SEARCH = 6  # nor more than 6 search domains (before glibc 2.26)
MAX_ROUTES = 64  # option 121 fits ~130 in a packet; more than this is no real network
MAX_NAME = 253  # RFC 1035: text form of a name, no trailing dot
MAX_LABEL = 63
LIMITED_BROADCAST = IPv4("255.255.255.255")  # `is_reserved` (240/4) covers it elsewhere
THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
# Destinations no DHCP route may claim: loopback, and multicast with class E.
NOT_ROUTABLE = (ipaddress.IPv4Network("127.0.0.0/8"), ipaddress.IPv4Network("224.0.0.0/3"))
T = TypeVar("T")


class Refusal(PacketError):
    """A reply the node will not use: the peer's fault, the message says why."""


@dataclass(frozen=True)
class Terms:
    """What a usable reply gives us; the timers are None in an OFFER without them."""

    address: str
    prefixlen: int
    server: str
    routers: tuple[str, ...]  # default gateways, first one used
    dns: tuple[str, ...]
    domain: str | None
    lease_s: int | None
    t1_s: int | None
    t2_s: int | None
    routes: tuple[Route, ...] = ()  # option 121 routes other than the default
    search: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # what was dropped, one line each


def check(msg: Message) -> Terms:
    """Judge an OFFER or ACK as a whole: no exception but PacketError on a decoded message."""
    kind = msg.msg_type
    if kind not in (MsgType.OFFER, MsgType.ACK):
        raise Refusal(f"not an OFFER or ACK ({kind.name if kind else 'no message type'})")
    addr = IPv4(msg.yiaddr)
    if not unicast(addr) or addr in THIS_NETWORK or addr.is_link_local:
        raise Refusal(f"address {addr} is not a host address")
    server = _one_addr(msg, Opt.SERVER_ID, "server identifier")
    if server is None:
        raise Refusal("no server identifier")
    if (server.is_unspecified or server.is_multicast or server == LIMITED_BROADCAST
            or server.is_loopback):
        raise Refusal(f"server identifier {server} is not a unicast address")
    if server == addr:
        raise Refusal(f"address {addr} is the server's own address")
    mask = _one_addr(msg, Opt.SUBNET_MASK, "subnet mask")
    if mask is None:
        raise Refusal("no subnet mask")
    try:
        prefix = ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen
    except ValueError:
        raise Refusal(f"subnet mask {mask} is not contiguous") from None
    if prefix < MIN_PREFIX:
        raise Refusal(f"subnet mask {mask} (/{prefix}) is wider than /{MIN_PREFIX}")
    subnet = ipaddress.IPv4Network(f"{addr}/{prefix}", strict=False)
    # /31 (RFC 3021) and /32 have no network or broadcast address.
    if prefix <= 30 and addr in (subnet.network_address, subnet.broadcast_address):
        which = "network" if addr == subnet.network_address else "broadcast"
        raise Refusal(f"address {addr} is the {which} address of {subnet}")
    routers, routes = _routing(msg, addr, subnet)
    notes: list[str] = []
    given = _addr_list(msg, Opt.DNS, "DNS server")
    dns = _kept(given, [a for a in given if not (a in THIS_NETWORK or a.is_multicast
                                                 or a.is_reserved)],
                MAX_DNS, notes, "dns", "servers", "unusable")
    raw = msg.get(Opt.DOMAIN_NAME)  # some servers NUL-terminate it
    domain = None if raw is None else _name_ok(raw.rstrip(b"\x00").decode("latin-1"), "domain name")
    raw = msg.get(Opt.DOMAIN_SEARCH) or b""  # no names in an absent or empty option
    names = [_name_ok(n, "domain search name") for n in wire.domain_search(raw)]
    search = _kept(names, [n for n in names if n], MAX_SEARCH, notes, "search", "domains", "empty")
    lease_s = _u32(msg, Opt.LEASE_TIME, "lease time")
    if kind is MsgType.ACK and lease_s is None:
        raise Refusal("ACK without a lease time")
    return Terms(address=str(addr), prefixlen=prefix, server=str(server), routers=routers,
                 dns=tuple(map(str, dns)), domain=domain or None, lease_s=lease_s,
                 t1_s=_u32(msg, Opt.RENEWAL_T1, "T1"), t2_s=_u32(msg, Opt.REBINDING_T2, "T2"),
                 routes=routes, search=search, notes=tuple(notes))


def unicast(addr: IPv4 | str) -> bool:
    """An address one host may hold and answer for."""
    a = IPv4(addr)
    return not (a.is_unspecified or a.is_multicast or a.is_reserved or a.is_loopback)


def _kept(given: Sequence[T], usable: list[T], limit: int, notes: list[str], what: str,
          noun: str, why: str) -> tuple[T, ...]:
    kept = tuple(dict.fromkeys(usable))[:limit]
    if len(kept) < len(given):
        notes.append(f"{what}: kept {len(kept)} of {len(given)} {noun} ({len(given) - len(kept)}"
                     f" dropped: {why}, repeated or over {limit})")
    return kept


def _one_addr(msg: Message, code: int, what: str) -> IPv4 | None:
    raw = msg.get(code)
    if raw is None:
        return None
    if len(raw) != 4:
        raise Refusal(f"{what} option of {len(raw)} bytes")
    return IPv4(raw)


def _addr_list(msg: Message, code: int, what: str) -> tuple[IPv4, ...]:
    raw = msg.get(code)
    if raw is None:
        return ()
    if not raw or len(raw) % 4:
        raise Refusal(f"{what} option of {len(raw)} bytes")
    return tuple(IPv4(raw[i:i + 4]) for i in range(0, len(raw), 4))


def _u32(msg: Message, code: int, what: str) -> int | None:
    four = _one_addr(msg, code, what)  # the same four bytes, big-endian
    return None if four is None else int(four)


def _routing(msg: Message, addr: IPv4, subnet: ipaddress.IPv4Network
             ) -> tuple[tuple[str, ...], tuple[Route, ...]]:
    """(default gateways, other routes). RFC 3442: with option 121, option 3 is ignored."""
    raw = msg.get(Opt.CLASSLESS_ROUTE)
    if raw is None:
        routers = _addr_list(msg, Opt.ROUTER, "router")
        for r in routers:
            _gateway_ok(r, addr, subnet, (), "router")
        return tuple(map(str, routers)), ()
    routes = wire.classless_routes(raw)
    if len(routes) > MAX_ROUTES:
        raise Refusal(f"{len(routes)} classless static routes (at most {MAX_ROUTES})")
    on_link = tuple(r.network for r in routes if r.gateway is None)
    for route in routes:
        net = route.network
        if any(net.subnet_of(bad) for bad in NOT_ROUTABLE):
            raise Refusal(f"classless static route to {net} (loopback, multicast or reserved)")
        if route.gateway is not None:
            _gateway_ok(IPv4(route.gateway), addr, subnet, on_link, f"route {net} gateway")
        elif net.prefixlen == 0:
            raise Refusal("classless static route makes the whole Internet on-link")
    defaults = tuple(r.gateway for r in routes if r.gateway and r.network.prefixlen == 0)
    return defaults, tuple(r for r in routes if r.network.prefixlen)


def _gateway_ok(gw: IPv4, addr: IPv4, subnet: ipaddress.IPv4Network,
                on_link: tuple[ipaddress.IPv4Network, ...], what: str) -> None:
    if gw == addr:
        raise Refusal(f"{what} {gw} is the offered address itself")
    if not unicast(gw):
        raise Refusal(f"{what} {gw} is not a unicast address")
    if gw in subnet:
        if subnet.prefixlen <= 30 and gw in (subnet.network_address, subnet.broadcast_address):
            raise Refusal(f"{what} {gw} is the network or broadcast address of {subnet}")
    elif not any(gw in net for net in on_link):
        raise Refusal(f"{what} {gw} is outside {subnet} and no classless static route reaches it")


def _name_ok(text: str, what: str) -> str:
    """A host name as resolv.conf may carry it: LDH labels (and `_`), RFC 1035 lengths."""
    name = text.removesuffix(".")
    if len(name) > MAX_NAME:
        raise Refusal(f"{what} of {len(name)} bytes (at most {MAX_NAME})")
    if not name:
        return ""
    for label in name.split("."):
        if not label:
            raise Refusal(f"{what} has an empty label")
        if len(label) > MAX_LABEL:
            raise Refusal(f"{what} has a label of {len(label)} bytes (at most {MAX_LABEL})")
        if not all(c.isascii() and (c.isalnum() or c in "-_") for c in label):
            shown = repr(name[:40] + ("..." if len(name) > 40 else ""))  # safe for one line
            raise Refusal(f"{what} {shown} has characters outside letters, digits, '-' and '_'")
    return name
