"""Links, addresses, routes (rtnetlink), SLAAC sysctls and resolv.conf. Netlink calls answer in
microseconds, so they run inline on the trio thread: nothing here waits on the network."""

import errno
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zosnode.atomicfile import write_atomic
from zosnode.net import netlink, nlwire
from zosnode.net.errors import NetSystemError, NetUsageError, PacketError
from zosnode.net.nlwire import ACK, CREATE, DUMP, REPLACE, REQUEST, NetlinkMessage

ARPHRD_ETHER, IFF_UP, IFF_LOWER_UP = 1, 0x1, 0x10000
NEWLINK, GETLINK, NEWADDR, DELADDR, GETADDR, NEWROUTE, DELROUTE = 16, 18, 20, 21, 22, 24, 25
IFLA_ADDRESS, IFLA_IFNAME, IFLA_LINKINFO, IFLA_CARRIER, IFLA_INFO_KIND = 1, 3, 18, 33, 1
IFA_ADDRESS, IFA_LOCAL, RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY = 1, 2, 1, 4, 5, 6
RT_TABLE_MAIN, RTPROT_STATIC, RTN_UNICAST, RT_SCOPE_LINK, RT_SCOPE_NOWHERE = 254, 4, 1, 253, 255
GONE = frozenset({errno.ESRCH, errno.ENODEV, errno.EADDRNOTAVAIL})  # nothing left to remove
_IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, index
_RTMSG = struct.Struct("=8BI")  # family, dst len, src len, tos, table, protocol, scope, type; flags
# Built on top of NICs, so never configured as one; a veth (a test namespace's cable) is a NIC.
VIRTUAL_KINDS = frozenset({"bridge", "bond", "vlan", "macvlan", "macvtap", "ipvlan", "tun",
                           "dummy", "vxlan", "wireguard", "gre", "gretap", "team", "ifb"})


@dataclass(frozen=True)
class Nic:
    name: str
    index: int
    mac: bytes

    def __post_init__(self) -> None:
        if len(self.mac) != 6 or self.index <= 0:
            raise NetUsageError(f"nic {self.name}: bad MAC or index")


def _split(head: struct.Struct, msg: NetlinkMessage) -> tuple[tuple[int, ...], dict[int, bytes]]:
    if len(msg.payload) < head.size:
        raise PacketError(f"netlink: a message of type {msg.kind} too short for its header")
    return head.unpack_from(msg.payload), nlwire.attrs(msg.payload[head.size:])


def _nic(msg: NetlinkMessage) -> Nic | None:
    (_, kind, index, _, _), a = _split(_IFINFO, msg)
    info = nlwire.attrs(a.get(IFLA_LINKINFO, b""))
    if kind != ARPHRD_ETHER or not a.get(IFLA_ADDRESS) or \
            nlwire.text(info.get(IFLA_INFO_KIND)) in VIRTUAL_KINDS:
        return None
    return Nic(nlwire.text(a.get(IFLA_IFNAME)) or "", index, a[IFLA_ADDRESS])


def _carrier(msg: NetlinkMessage) -> bool:
    (_, _, _, flags, _), a = _split(_IFINFO, msg)
    carrier = a.get(IFLA_CARRIER)  # older kernels: the lower-layer flag says the same
    up = carrier[:1] != b"\0" if carrier else flags & IFF_LOWER_UP
    return bool(flags & IFF_UP) and bool(up)


def _address(nic: Nic, address: str, prefixlen: int) -> bytes:
    raw = socket.inet_aton(address)  # a DHCPv4 lease's: IPv6 comes from SLAAC, in the kernel
    return _IFADDR.pack(socket.AF_INET, prefixlen, 0, 0, nic.index) + \
        nlwire.attr(IFA_LOCAL, raw) + nlwire.attr(IFA_ADDRESS, raw)


def _route(nic: Nic, destination: str, metric: int, gateway: str | None, delete: bool) -> bytes:
    """An IPv4 route (a lease's); deleting one matches any protocol, scope and type."""
    address, _, length = destination.partition("/")
    attrs = nlwire.attr(RTA_DST, socket.inet_aton(address)) if int(length) else b""
    attrs += nlwire.attr(RTA_GATEWAY, socket.inet_aton(gateway)) if gateway else b""
    scope = RT_SCOPE_NOWHERE if delete else 0 if gateway else RT_SCOPE_LINK
    return _RTMSG.pack(socket.AF_INET, int(length), 0, 0, RT_TABLE_MAIN,
                       0 if delete else RTPROT_STATIC, scope, 0 if delete else RTN_UNICAST, 0) + \
        attrs + nlwire.u32(RTA_OIF, nic.index) + nlwire.u32(RTA_PRIORITY, metric)


class Links:
    def __init__(self) -> None:
        self._nl = netlink.Socket(netlink.ROUTE)

    def close(self) -> None:
        self._nl.close()

    def _ask(self, what: str, kind: int, flags: int, payload: bytes,
             decode: Callable[[NetlinkMessage], Any] = bool, gone: bool = False) -> list[Any]:
        try:
            return self._nl.exchange(f"netlink: {what}", [(kind, REQUEST | flags, payload)], decode)
        except netlink.KernelRefused as exc:
            if gone and exc.errno in GONE:
                return []
            raise

    def nics(self) -> list[Nic]:
        """Ethernet NICs, sorted by name (the order used for every tie)."""
        found = self._ask("listing links", GETLINK, DUMP, _IFINFO.pack(0, 0, 0, 0, 0), _nic)
        return sorted((n for n in found if n is not None), key=lambda n: n.name)

    def set_up(self, nic: Nic) -> None:
        self._ask(f"bringing {nic.name} up", NEWLINK, ACK,
                  _IFINFO.pack(0, 0, nic.index, IFF_UP, IFF_UP))

    def carrier(self, nic: Nic) -> bool:
        return True in self._ask(f"reading {nic.name}", GETLINK, ACK,
                                 _IFINFO.pack(0, 0, nic.index, 0, 0), _carrier)

    def add_address(self, nic: Nic, address: str, prefixlen: int) -> None:
        self._ask(f"adding {address}/{prefixlen} to {nic.name}", NEWADDR, ACK | CREATE | REPLACE,
                  _address(nic, address, prefixlen))

    def del_address(self, nic: Nic, address: str, prefixlen: int) -> None:
        self._ask(f"removing {address} from {nic.name}", DELADDR, ACK,
                  _address(nic, address, prefixlen), gone=True)

    def addresses(self, nic: Nic, family: int) -> list[tuple[str, int]]:
        def held(msg: NetlinkMessage) -> tuple[str, int] | None:
            (fam, prefixlen, _, _, index), a = _split(_IFADDR, msg)
            raw = a.get(IFA_ADDRESS, b"")
            ok = index == nic.index and fam == family and len(raw) == (4 if fam == 2 else 16)
            return (socket.inet_ntop(fam, raw), prefixlen) if ok else None

        found = self._ask(f"reading addresses of {nic.name}", GETADDR, DUMP,
                          _IFADDR.pack(family, 0, 0, 0, 0), held)
        return [a for a in found if a is not None]

    def set_route(self, nic: Nic, destination: str, gateway: str | None, metric: int) -> None:
        where = f"via {gateway}" if gateway else "on-link"
        self._ask(f"route {destination} {where} on {nic.name}", NEWROUTE, ACK | CREATE | REPLACE,
                  _route(nic, destination, metric, gateway, delete=False))

    def del_route(self, nic: Nic, destination: str, metric: int) -> None:
        self._ask(f"removing the route {destination} on {nic.name}", DELROUTE, ACK,
                  _route(nic, destination, metric, None, delete=True), gone=True)


def accept_router_adverts(nic: Nic) -> bool:
    """Turn on SLAAC for a NIC before it comes up. False if IPv6 is absent."""
    conf = Path("/proc/sys/net/ipv6/conf") / nic.name
    if not conf.is_dir():
        return False
    for key, value in (("disable_ipv6", "0"), ("accept_ra", "1"), ("autoconf", "1")):
        try:
            (conf / key).write_text(value)
        except OSError as exc:
            raise NetSystemError(f"sysctl {conf / key}: {exc.strerror}") from None
    return True


def resolv_conf_text(nameservers: tuple[str, ...], search: tuple[str, ...]) -> str:
    """From a lease: `lease_check` refused any name with a byte outside LDH and '_'."""
    lines = ["# written by zosnode from its DHCP lease"]
    if search:
        lines.append("search " + " ".join(search[:6]))  # glibc < 2.26 reads at most 6
    lines += [f"nameserver {ns}" for ns in nameservers[:3]]  # glibc reads at most 3
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    try:
        write_atomic(path, text.encode())
    except OSError as exc:
        raise NetSystemError(f"writing {path}: {exc.strerror or exc}") from None
