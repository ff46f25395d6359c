"""The settle window: the NIC choice waits for other NICs only while their lease
could still change it (`zosnode.net.choose.decided`). Real dnsmasq in namespaces."""

from __future__ import annotations

from collections.abc import Callable

from tests.net.conftest import Lan, NodeProc

HUB = "zos.hub=http://10.77.0.1:8080 zos.farm=f1"
SETTLE_S = 2.0  # bringup.SETTLE_S: what the node waited here before
Start = Callable[..., NodeProc]


def _lease_to_choice(node: NodeProc) -> float:
    assert node.proc.wait(timeout=40) == 0, node.text()
    i, leased, _ = node.wait_line("eth0: lease ", 1)
    _, chose, line = node.wait_line("chose ", 1, after=i)
    assert line.split("chose ")[1].startswith("eth0 "), line
    gap = chose - leased
    print(f"lease to choice: {gap:.3f} s")
    return gap


def test_a_nic_without_carrier_is_not_waited_for(lan: Lan, node_ns: str,
                                                 start_node: Start) -> None:
    lan.plug(node_ns, "eth0")
    dark = lan.plug(node_ns, "eth1")
    lan.link(dark, up=False)  # the cable is out: eth1 has no carrier
    with lan.dhcp():
        node = start_node(node_ns, "--cmdline", HUB, "--exit-after-bringup")
        assert _lease_to_choice(node) < SETTLE_S * 0.95, node.text()


def test_no_wait_when_the_tie_winner_reaches_a_hub(lan: Lan, node_ns: str,
                                                   start_node: Start) -> None:
    """eth1 has carrier but no DHCP server answers it: eth0 sorts first and its
    lease reaches the hub, so nothing eth1 could bring would change the choice."""
    silent = lan.add_bridge("br1", "10.78.0.1/24")
    lan.plug(node_ns, "eth0")
    lan.plug(node_ns, "eth1", silent)
    with lan.dhcp():
        node = start_node(node_ns, "--cmdline", HUB, "--exit-after-bringup")
        assert _lease_to_choice(node) < SETTLE_S * 0.95, node.text()
    assert "reaches a hub" in node.wait_line("chose ", 1)[2]
