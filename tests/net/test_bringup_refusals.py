"""The bring-up's answer to a kernel that refuses part of a lease, without a kernel:
each refusal undoes what went in and declines the lease; nothing escapes."""

from __future__ import annotations

from pathlib import Path

import pytest

from zosnode.agent.bringup import Bringup, Options
from zosnode.agent.cmdline import Config
from zosnode.net.dhcp_client import Bound, Lease, LeaseLost, Renewed
from zosnode.net.dhcp_io import NicControl
from zosnode.net.dhcp_wire import Route
from zosnode.net.errors import NetSystemError
from zosnode.net.links import Nic

ETH0 = Nic("eth0", 2, bytes.fromhex("525400000002"))
ETH1 = Nic("eth1", 3, bytes.fromhex("525400000003"))


class FakeLinks:
    """Addresses and routes as a kernel would hold them; `refuse` names calls that fail."""

    def __init__(self, refuse: set[str] | None = None) -> None:
        self.refuse = refuse or set()
        self.addrs: set[tuple[str, str, int]] = set()
        self.routes: dict[tuple[str, str, int], str | None] = {}

    def _check(self, what: str) -> None:
        if what in self.refuse:
            raise NetSystemError(f"netlink: {what}: Network is unreachable")

    def add_address(self, nic: Nic, address: str, prefixlen: int) -> None:
        self._check(f"addr {address}")
        self.addrs.add((nic.name, address, prefixlen))

    def del_address(self, nic: Nic, address: str, prefixlen: int) -> None:
        self._check(f"del addr {address}")
        self.addrs.discard((nic.name, address, prefixlen))

    def set_route(self, nic: Nic, destination: str, gateway: str | None, metric: int) -> None:
        self._check(f"route {destination} {metric}")
        self.routes[(nic.name, destination, metric)] = gateway

    def del_route(self, nic: Nic, destination: str, metric: int) -> None:
        self.routes.pop((nic.name, destination, metric), None)


def lease(address: str = "10.9.0.50", routes: tuple[Route, ...] = (),
          dns: tuple[str, ...] = ("10.9.0.2",)) -> Lease:
    return Lease(address=address, prefixlen=24, server="10.9.0.1", routers=("10.9.0.1",),
                 dns=dns, domain=None, lease_s=600, t1_s=300, t2_s=525, start=0.0,
                 routes=routes)


def bringup(tmp_path: Path, links: FakeLinks, nics: tuple[Nic, ...] = (ETH0,)
            ) -> tuple[Bringup, list[str]]:
    said: list[str] = []
    b = Bringup(Config(), said.append, Options(resolv_conf=tmp_path / "resolv.conf"))
    b._links = links  # type: ignore[assignment]
    b._nics = {n.name: n for n in nics}
    b._controls = {n.name: NicControl() for n in nics}
    b._settled = True
    return b, said


def declined(b: Bringup, nic: Nic) -> list[str]:
    return b._controls[nic.name]._declines


ROUTES = (Route("10.88.0.1/32", None), Route("172.20.0.0/16", "10.88.0.1"))


@pytest.mark.parametrize("refused", ["addr 10.9.0.50", "route 172.20.0.0/16 1002",
                                     "route 0.0.0.0/0 1002", "route 0.0.0.0/0 0"])
async def test_a_refused_step_undoes_the_lease_and_declines_it(tmp_path: Path,
                                                               refused: str) -> None:
    links = FakeLinks({refused})
    b, said = bringup(tmp_path, links)
    await b._on_event(ETH0, Bound(lease(routes=ROUTES)))  # never raises
    assert declined(b, ETH0) == [f"netlink: {refused}: Network is unreachable"]
    assert links.addrs == set() and links.routes == {}
    assert b.network.chosen is None and b.network.leases == {}
    assert any("cannot use the lease on 10.9.0.50" in x and "declining it" in x for x in said)
    # The client's answer to the decline is a LeaseLost: handled, still nothing left.
    await b._on_event(ETH0, LeaseLost(lease(routes=ROUTES), "declined: ..."))
    assert links.addrs == set() and links.routes == {}


async def test_a_lease_that_goes_in_is_chosen(tmp_path: Path) -> None:
    links = FakeLinks()
    b, said = bringup(tmp_path, links)
    await b._on_event(ETH0, Bound(lease(routes=ROUTES)))
    assert declined(b, ETH0) == []
    assert links.addrs == {("eth0", "10.9.0.50", 24)}
    assert links.routes == {("eth0", "10.88.0.1/32", 1002): None,
                            ("eth0", "172.20.0.0/16", 1002): "10.88.0.1",
                            ("eth0", "0.0.0.0/0", 1002): "10.9.0.1",
                            ("eth0", "0.0.0.0/0", 0): "10.9.0.1"}
    assert b.network.chosen == ETH0
    assert (tmp_path / "resolv.conf").read_text().endswith("nameserver 10.9.0.2\n")


async def test_when_the_chosen_route_is_refused_the_next_nic_is_chosen(tmp_path: Path) -> None:
    links = FakeLinks({"route 0.0.0.0/0 0"})
    b, said = bringup(tmp_path, links, (ETH0, ETH1))
    b._settled = False  # both leases first, then the choice
    await b._on_event(ETH0, Bound(lease()))
    await b._on_event(ETH1, Bound(lease("10.10.0.50")))
    links.refuse = set()
    original = links.set_route

    def refuse_eth0(nic: Nic, destination: str, gateway: str | None, metric: int) -> None:
        if nic == ETH0 and metric == 0:
            raise NetSystemError("netlink: default route: Invalid argument")
        original(nic, destination, gateway, metric)

    links.set_route = refuse_eth0  # type: ignore[method-assign]
    await b._rechoose()
    assert b.network.chosen == ETH1 and declined(b, ETH0) and not declined(b, ETH1)
    assert not any(n == "eth0" for n, _, _ in links.addrs)
    assert ("eth1", "0.0.0.0/0", 0) in links.routes


async def test_renewal_with_new_terms_the_kernel_refuses(tmp_path: Path) -> None:
    links = FakeLinks()
    b, said = bringup(tmp_path, links)
    await b._on_event(ETH0, Bound(lease()))
    links.refuse = {"route 172.20.0.0/16 1002"}
    await b._on_event(ETH0, Renewed(lease(routes=ROUTES)))
    assert declined(b, ETH0) and links.addrs == set() and links.routes == {}
    assert b.network.chosen is None


async def test_renewal_with_new_terms_applies_them(tmp_path: Path) -> None:
    links = FakeLinks()
    b, said = bringup(tmp_path, links)
    await b._on_event(ETH0, Bound(lease(routes=ROUTES)))
    await b._on_event(ETH0, Renewed(lease(dns=("10.9.0.3",))))  # routes gone, new DNS
    assert links.routes == {("eth0", "0.0.0.0/0", 1002): "10.9.0.1",
                            ("eth0", "0.0.0.0/0", 0): "10.9.0.1"}
    assert "nameserver 10.9.0.3" in (tmp_path / "resolv.conf").read_text()
    assert any("renewed with new terms" in x for x in said)


async def test_undoing_a_lease_never_raises(tmp_path: Path) -> None:
    links = FakeLinks()
    b, said = bringup(tmp_path, links)
    await b._on_event(ETH0, Bound(lease()))
    links.refuse = {"del addr 10.9.0.50"}
    await b._on_event(ETH0, LeaseLost(lease(), "link down"))
    assert any("del addr 10.9.0.50" in x for x in said)
    assert b.network.chosen is None


async def test_the_last_refused_reply_is_kept_for_the_heartbeat(tmp_path: Path) -> None:
    from zosnode.net.dhcp_client import Refused

    b, _ = bringup(tmp_path, FakeLinks())
    assert b.network.last_refusal is None
    await b._on_event(ETH0, Refused("OFFER of 10.9.0.66 from 10.9.0.6", "no router"))
    await b._on_event(ETH0, Refused("ACK of 10.9.0.67 from 10.9.0.7", "lease too short"))
    assert b.network.last_refusal is not None
    why, at = b.network.last_refusal
    assert why == "eth0: refused ACK of 10.9.0.67 from 10.9.0.7: lease too short" and at > 0
