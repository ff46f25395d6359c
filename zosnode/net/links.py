"""Links, addresses, routes (netlink), SLAAC sysctls and resolv.conf. Netlink calls answer in
microseconds, so they run inline on the trio thread: nothing here waits on the network."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zosnode.atomicfile import write_atomic
from zosnode.net import netlink
from zosnode.net.errors import NetSystemError, NetUsageError

ARPHRD_ETHER = 1
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
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


@contextmanager
def _netlink(what: str, gone: tuple[str, ...] = ()) -> Iterator[None]:
    """A pyroute2 failure as NetSystemError; one saying the object is `gone` is no failure."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - pyroute2 raises many kinds
        if not any(g in str(exc) for g in gone):
            raise NetSystemError(f"netlink: {what}: {exc}") from None


class Links:
    def __init__(self) -> None:
        self._ipr = netlink.iproute()

    def close(self) -> None:
        self._ipr.close()

    def nics(self) -> list[Nic]:
        """Ethernet NICs, sorted by name (the order used for every tie)."""
        out = []
        with _netlink("listing links"):
            links = list(self._ipr.get_links())
        for link in links:
            info, mac = link.get_attr("IFLA_LINKINFO"), link.get_attr("IFLA_ADDRESS")
            kind = None if info is None else info.get_attr("IFLA_INFO_KIND")
            if link["ifi_type"] == ARPHRD_ETHER and kind not in VIRTUAL_KINDS and mac:
                out.append(Nic(link.get_attr("IFLA_IFNAME"), link["index"],
                               bytes.fromhex(mac.replace(":", ""))))
        return sorted(out, key=lambda n: n.name)

    def set_up(self, nic: Nic) -> None:
        with _netlink(f"bringing {nic.name} up"):
            self._ipr.link("set", index=nic.index, state="up")

    def carrier(self, nic: Nic) -> bool:
        with _netlink(f"reading {nic.name}"):
            (link,) = self._ipr.get_links(nic.index)
        carrier = link.get_attr("IFLA_CARRIER")
        if carrier is None:  # older kernels: the lower-layer flag says the same
            carrier = link["flags"] & IFF_LOWER_UP
        return bool(link["flags"] & IFF_UP) and bool(carrier)

    def add_address(self, nic: Nic, address: str, prefixlen: int) -> None:
        with _netlink(f"adding {address}/{prefixlen} to {nic.name}"):
            self._ipr.addr("replace", index=nic.index, address=address, prefixlen=prefixlen)

    def del_address(self, nic: Nic, address: str, prefixlen: int) -> None:
        with _netlink(f"removing {address} from {nic.name}", gone=("No such", "Cannot assign")):
            self._ipr.addr("del", index=nic.index, address=address, prefixlen=prefixlen)

    def addresses(self, nic: Nic, family: int) -> list[tuple[str, int]]:
        with _netlink(f"reading addresses of {nic.name}"):
            return [(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                    for a in self._ipr.get_addr(index=nic.index, family=family)]

    def set_route(self, nic: Nic, destination: str, gateway: str | None, metric: int) -> None:
        where = f"via {gateway}" if gateway else "on-link"
        via: dict[str, Any] = {"gateway": gateway} if gateway else {"scope": 253}  # RT_SCOPE_LINK
        with _netlink(f"route {destination} {where} on {nic.name}"):
            self._ipr.route("replace", dst=destination, oif=nic.index, priority=metric, **via)

    def del_route(self, nic: Nic, destination: str, metric: int) -> None:
        with _netlink(f"removing the route {destination} on {nic.name}", gone=("No such",)):
            self._ipr.route("del", dst=destination, oif=nic.index, priority=metric)


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
