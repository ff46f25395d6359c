"""The NIC choice's pure rule, and when waiting for more leases can no longer change it."""

from __future__ import annotations

from zosnode.net.choose import Candidate, choose, decided, preferred


def _c(name: str, leased: bool = True, hub: bool = False, gw: bool = True) -> Candidate:
    return Candidate(name, leased, hub, gw)


def test_hub_then_gateway_then_name() -> None:
    assert choose([_c("eth1", hub=True), _c("eth0")]).name == "eth1"
    assert choose([_c("eth1"), _c("eth0", gw=False)]).name == "eth1"
    assert choose([_c("eth1"), _c("eth0")]).name == "eth0"
    assert choose([_c("eth0", leased=False)]).name is None
    assert choose([_c("eth0"), _c("eth1")], pinned="eth1").reason == "pinned by zos.net"


def test_preferred_is_the_lowest_name_with_carrier() -> None:
    assert preferred({"eth1", "eth0", "enp3s0"}) == "enp3s0"
    assert preferred(set()) is None


def test_no_wait_once_every_nic_with_carrier_holds_a_lease() -> None:
    # eth1 has no carrier: it cannot lease, so it is not waited for.
    assert decided({"eth0"}, {"eth0"}, preferred_reaches_hub=False)
    assert decided({"eth0", "eth1"}, {"eth0", "eth1"}, preferred_reaches_hub=False)
    assert not decided({"eth1"}, {"eth0", "eth1"}, preferred_reaches_hub=False)


def test_no_wait_once_the_tie_winner_reaches_a_hub() -> None:
    """eth0 wins every tie (rule 5) and its lease reaches a hub (rule 3): whatever
    eth1's lease would bring, eth0 is chosen, so eth1 is not waited for."""
    assert decided({"eth0"}, {"eth0", "eth1"}, preferred_reaches_hub=True)
    assert choose([_c("eth0", hub=True), _c("eth1", hub=True)]).name == "eth0"
    assert not decided({"eth0"}, {"eth0", "eth1"}, preferred_reaches_hub=False)
