"""Bring-up against real dnsmasq in namespaces: leases, late servers, two NICs,
NAK, renewal at T1, expiry, link flaps."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest

from tests.lab.dnsmasq import wait_for_log
from tests.lab.netns import nsexec, run
from tests.net.conftest import Lan, NodeProc, addresses, default_routes

HUB = "zos.hub=http://10.77.0.1:8080 zos.farm=f1"
Start = Callable[..., NodeProc]


def test_lease_on_one_nic(lan: Lan, node_ns: str, start_node: Start) -> None:
    lan.plug(node_ns, "eth0")
    with lan.dhcp() as log:
        node = start_node(node_ns, "--cmdline", HUB, "--exit-after-bringup")
        assert node.proc.wait(timeout=30) == 0, node.text()
        text = log.read_text()
    (acked,) = re.findall(r"DHCPACK\(br0\) (\S+) ", text)
    _, _, line = node.wait_line("chose eth0", 1)
    assert f"address {acked}/24" in line and "reaches a hub" in line
    assert addresses(node_ns, "eth0") == [f"{acked}/24"]
    assert "default via 10.77.0.1 dev eth0" in default_routes(node_ns)
    resolv = (lan.tmp / "resolv.conf").read_text()
    assert "nameserver 10.77.0.1" in resolv
    assert "firewall applied" in node.lines[1][1]  # before any NIC comes up
    assert node.text().index("firewall applied") < node.text().index("eth0: up")


def test_server_appears_later(lan: Lan, node_ns: str, start_node: Start) -> None:
    lan.plug(node_ns, "eth0")
    node = start_node(node_ns, "--cmdline", HUB, "--exit-after-bringup")
    node.wait_line("dhcp init -> selecting", 10)
    time.sleep(5)  # several DISCOVERs go unanswered
    assert node.proc.poll() is None
    with lan.dhcp():
        appeared = time.monotonic()
        _, when, _ = node.wait_line("network up on eth0", 20)
        assert node.proc.wait(timeout=10) == 0
    # The discovery backoff is capped at 8 s ± 1 s; a lost REQUEST costs 4 s ± 1 s more.
    assert when - appeared < 15, when - appeared


def test_two_nics_only_one_served_is_chosen_deterministically(
        lan: Lan, start_node: Start) -> None:
    from tests.lab.netns import netns

    dark = lan.add_bridge("br1", "10.78.0.1/24")  # no DHCP server on this one
    chosen = []
    for _ in range(2):
        with netns("zn") as ns:
            lan.plug(ns, "eth0", dark)  # sorts first, but gets no lease
            lan.plug(ns, "eth1")
            with lan.dhcp(fresh=True):
                node = start_node(ns, "--cmdline", HUB, "--exit-after-bringup")
                assert node.proc.wait(timeout=40) == 0, node.text()
            _, _, line = node.wait_line("chose ", 1)
            chosen.append(line.split("chose ")[1].split()[0])
            assert addresses(ns, "eth0") == []
            assert "dev eth1" in default_routes(ns)
    assert chosen == ["eth1", "eth1"]


def test_link_flap_reacquires_then_nak_moves_us(lan: Lan, node_ns: str,
                                                 start_node: Start) -> None:
    port = lan.plug(node_ns, "eth0")
    with lan.dhcp() as log:
        node = start_node(node_ns, "--cmdline", HUB, "--network-only")
        node.wait_line("network up on eth0", 30)
        (first,) = addresses(node_ns, "eth0")
        mark = len(node.lines)
        lan.link(port, up=False)
        node.wait_line("eth0: carrier lost", 5, mark)
        node.wait_line("address removed", 5, mark)
        assert addresses(node_ns, "eth0") == []
        lan.link(port, up=True)
        node.wait_line("dhcp init-reboot -> rebooting", 10, mark)
        node.wait_line("chose eth0", 15, mark)
        assert addresses(node_ns, "eth0") == [first]
        assert "DHCPREQUEST(br0) " + first.split("/")[0] in log.read_text()
    # The server comes back owning another range and says no to the old address.
    with lan.dhcp("d2", first="10.77.0.150", last="10.77.0.199",
                  extra=("dhcp-authoritative",)) as log2:
        mark = len(node.lines)
        lan.link(port, up=False)
        node.wait_line("carrier lost", 5, mark)
        lan.link(port, up=True)
        node.wait_line("-> init (NAK)", 15, mark)
        _, _, line = node.wait_line("chose eth0", 30, mark)
        assert "DHCPNAK(br0)" in log2.read_text()
    (now,) = addresses(node_ns, "eth0")
    assert now.startswith("10.77.0.1") and now != first
    assert int(now.split(".")[3].split("/")[0]) >= 150


@pytest.mark.slow
def test_short_lease_renewed_at_t1_then_expires_and_recovers(
        lan: Lan, node_ns: str, start_node: Start) -> None:
    """dnsmasq's shortest lease is 2 min, so expiry takes that long; T1/T2 are set short."""
    lan.plug(node_ns, "eth0")
    short = ("dhcp-option=option:T1,3", "dhcp-option=option:T2,5")
    with lan.dhcp(extra=short) as log:
        node = start_node(node_ns, "--cmdline", HUB, "--network-only")
        node.wait_line("network up on eth0", 30)
        (addr,) = addresses(node_ns, "eth0")
        ip = addr.split("/")[0]
        node.wait_line("dhcp bound -> renewing (T1 reached)", 8)
        node.wait_line("lease renewed", 5)
        text = wait_for_log(log, f"DHCPACK(br0) {ip}", 5, count=2)
        assert text.count(f"DHCPREQUEST(br0) {ip}") >= 2
    # The server is gone: renewing, rebinding, then the lease runs out.
    node.wait_line("dhcp renewing -> rebinding (T2 reached)", 15)
    _, lost_at, _ = node.wait_line("lost (lease expired)", 130)
    assert addresses(node_ns, "eth0") == []
    node.wait_line("no longer the chosen NIC", 1)
    mark = len(node.lines)
    with lan.dhcp():
        node.wait_line("chose eth0", 20, mark)
    assert addresses(node_ns, "eth0") == [addr]


def test_ipv6_router_advertisements_give_a_slaac_address(lan: Lan, node_ns: str,
                                                         start_node: Start) -> None:
    run(nsexec(lan.ns, "ip", "-6", "addr", "add", "fd77::1/64", "dev", lan.bridge, "nodad"))
    lan.plug(node_ns, "eth0")
    ra = ("enable-ra", f"dhcp-range=::,constructor:{lan.bridge},ra-only")
    with lan.dhcp(extra=ra):
        node = start_node(node_ns, "--cmdline", HUB, "--network-only")
        node.wait_line("network up on eth0", 30)
        _, _, line = node.wait_line("IPv6 address fd77:", 30)
    assert line.split("IPv6 address ")[1].split()[0].endswith("/64")
    out = run(nsexec(node_ns, "ip", "-6", "addr", "show", "dev", "eth0", "scope", "global"))
    assert "fd77:" in out.stdout


def test_nic_that_reaches_a_hub_wins_over_name_order(lan: Lan, node_ns: str,
                                                     start_node: Start) -> None:
    """Both NICs get a lease; only eth1's network reaches the hub, so eth1 is chosen
    although eth0 sorts first."""
    from tests.net.conftest import make_lan

    with make_lan(lan.tmp / "second", "10.79.0.1/24") as other:
        lan.plug(node_ns, "eth0")
        other.plug(node_ns, "eth1")
        with lan.dhcp(), other.dhcp(first="10.79.0.50", last="10.79.0.99"):
            node = start_node(node_ns, "--cmdline", "zos.hub=http://10.79.0.1:8080",
                              "--exit-after-bringup")
            assert node.proc.wait(timeout=40) == 0, node.text()
        _, _, line = node.wait_line("chose ", 1)
        assert line.split("chose ")[1].startswith("eth1 (reaches a hub (1 other lease))")
        assert addresses(node_ns, "eth0") and addresses(node_ns, "eth1")
        routes = [r.split() for r in default_routes(node_ns).splitlines()]
        chosen = [r for r in routes if "metric" not in r]  # metric 0 is not printed
        assert len(chosen) == 1 and chosen[0][:5] == ["default", "via", "10.79.0.1", "dev",
                                                      "eth1"]
        assert "nameserver 10.79.0.1" in (lan.tmp / "resolv.conf").read_text()


# -- issue #19: nothing the network does stops the node ----------------------------------


def test_address_held_by_another_host_is_declined(lan: Lan, node_ns: str,
                                                  start_node: Start) -> None:
    """dnsmasq leases (statically) an address a second host already uses: the ARP
    probe hears it, the node declines, and takes another address later."""
    from tests.lab.netns import netns
    from tests.net.conftest import mac_of

    lan.plug(node_ns, "eth0")
    mac = mac_of(node_ns, "eth0")
    with netns("zs") as squatter:
        lan.plug(squatter, "eth0")
        run(nsexec(squatter, "ip", "addr", "add", "10.77.0.60/24", "dev", "eth0"))
        run(nsexec(squatter, "ip", "link", "set", "eth0", "up"))
        holder = mac_of(squatter, "eth0")
        with lan.dhcp(extra=(f"dhcp-host={mac},10.77.0.60",)) as log:
            node = start_node(node_ns, "--cmdline", HUB, "--network-only")
            _, t_ack, _ = node.wait_line("-> checking (ACK of 10.77.0.60", 30)
            _, t_declined, line = node.wait_line("declined 10.77.0.60", 5)
            assert f"address in use by {holder} (ARP reply)" in line
            assert addresses(node_ns, "eth0") == []
            wait_for_log(log, "DHCPDECLINE(br0) 10.77.0.60", 5)
            print(f"ARP probe until conflict: {t_declined - t_ack:.3f}s")
            _, _, chose = node.wait_line("chose eth0", 40)
        assert "10.77.0.60" not in chose and node.proc.poll() is None
        (now,) = addresses(node_ns, "eth0")
        assert now != "10.77.0.60/24"


def test_free_address_is_probed_then_used(lan: Lan, node_ns: str, start_node: Start) -> None:
    lan.plug(node_ns, "eth0")
    with lan.dhcp():
        node = start_node(node_ns, "--cmdline", HUB, "--exit-after-bringup")
        assert node.proc.wait(timeout=30) == 0, node.text()
    _, t_ack, _ = node.wait_line("-> checking (ACK of", 1)
    _, t_bound, _ = node.wait_line("checking -> bound", 1)
    print(f"ARP probe of a free address: {t_bound - t_ack:.3f}s")
    assert t_bound - t_ack < 5  # 0.4-0.7 s by design; generous for a loaded machine


def test_dns_the_node_cannot_write_is_declined_not_fatal(lan: Lan, node_ns: str,
                                                         start_node: Start) -> None:
    """Finding: any refusal while configuring a lease was fatal (a reboot as PID 1)."""
    lan.plug(node_ns, "eth0")
    (lan.tmp / "resolv.conf").mkdir()  # the node's --resolv-conf cannot be written
    with lan.dhcp() as log:
        node = start_node(node_ns, "--cmdline", HUB, "--network-only")
        _, _, line = node.wait_line("cannot use the lease on", 30)
        assert "writing" in line and "declining it" in line
        node.wait_line("(declined: ", 5)
        wait_for_log(log, "DHCPDECLINE(br0)", 5)
        assert node.proc.poll() is None
        assert addresses(node_ns, "eth0") == []
        assert default_routes(node_ns) == ""
        # It keeps trying, RFC 2131's 10 s apart at first.
        node.wait_line("dhcp init -> selecting", 15)
        assert node.proc.poll() is None


def test_renewals_use_a_new_xid_each_against_dnsmasq(lan: Lan, node_ns: str,
                                                     start_node: Start) -> None:
    lan.plug(node_ns, "eth0")
    short = ("dhcp-option=option:T1,3", "dhcp-option=option:T2,100")
    with lan.dhcp(extra=short) as log:
        node = start_node(node_ns, "--cmdline", HUB, "--network-only")
        node.wait_line("network up on eth0", 30)
        (addr,) = addresses(node_ns, "eth0")
        ip = addr.split("/")[0]
        text = wait_for_log(log, f"DHCPACK(br0) {ip}", 15, count=3)  # the lease + 2 renewals
    xids = re.findall(rf"(\d+) DHCPREQUEST\(br0\) {re.escape(ip)}", text)
    assert len(xids) >= 3 and len(set(xids)) == len(xids), xids
    assert node.text().count("lease renewed") >= 2


def test_classless_static_routes_installed_then_removed(lan: Lan, node_ns: str,
                                                        start_node: Start) -> None:
    """Option 121 (RFC 3442): an on-link route reaches a gateway outside the subnet,
    the default route goes through it, option 3 is ignored; all of it goes with the lease."""
    from tests.net.rogue_dhcp import plan, reply

    port = lan.plug(node_ns, "eth0")
    opt121 = bytes([32, 10, 88, 0, 1, 0, 0, 0, 0,  # 10.88.0.1/32 on-link
                    0, 10, 88, 0, 1,  # default via 10.88.0.1
                    16, 172, 20, 10, 77, 0, 1])  # 172.20.0.0/16 via 10.77.0.1
    ack = reply("ACK", "10.77.0.60", routers=("192.168.1.1",), extra=((121, opt121),))
    with lan.rogue(plan(lan.bridge, [{"offers": [reply("OFFER", "10.77.0.60")],
                                      "acks": [ack]}])):
        node = start_node(node_ns, "--cmdline", HUB, "--network-only")
        _, _, line = node.wait_line("chose eth0", 30)
        assert "gateway 10.88.0.1" in line
        index = int(run(nsexec(node_ns, "cat", "/sys/class/net/eth0/ifindex")).stdout)
        routes = sorted(r.strip() for r in run(nsexec(node_ns, "ip", "-4", "route")).stdout
                        .splitlines())
        metric = 1000 + index
        assert routes == sorted([
            "default via 10.88.0.1 dev eth0 proto static",
            f"default via 10.88.0.1 dev eth0 proto static metric {metric}",
            "10.77.0.0/24 dev eth0 proto kernel scope link src 10.77.0.60",
            f"10.88.0.1 dev eth0 proto static scope link metric {metric}",
            f"172.20.0.0/16 via 10.77.0.1 dev eth0 proto static metric {metric}",
        ]), routes
        mark = len(node.lines)
        lan.link(port, up=False)
        node.wait_line("address removed", 5, mark)
        assert run(nsexec(node_ns, "ip", "-4", "route")).stdout == ""
        assert addresses(node_ns, "eth0") == []
