"""A rogue DHCP server against the real bring-up (`zosnode node run` in a namespace).

Every class of unusable OFFER and ACK, NAK floods, replies for other
transactions and other MACs: the agent stays alive, configures nothing
bogus (checked with `ip addr`, `ip route` and resolv.conf) and says why it
refused each one, within its console rate limit.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from tests.lab.netns import nsexec, run
from tests.net.conftest import Lan, NodeProc, addresses, mac_of
from tests.net.rogue_dhcp import long_option, plan, reply

HUB = "zos.hub=http://10.77.0.1:8080 zos.farm=f1"
GOOD = "10.77.0.60"
Start = Callable[..., NodeProc]


def main_routes(ns: str) -> list[str]:
    return [r.strip() for r in run(nsexec(ns, "ip", "-4", "route", "show")).stdout.splitlines()]


def dns_name(name: str) -> bytes:
    return b"".join(bytes([len(x)]) + x.encode() for x in name.split(".")) + b"\0"


def route121(*routes: tuple[int, bytes, str]) -> bytes:
    return b"".join(bytes([width]) + dest + bytes(int(p) for p in gw.split("."))
                    for width, dest, gw in routes)


LONG_DOMAIN = (".".join(["a" * 59] * 20) + "a").encode()  # 1,200 bytes

# (name, the offer/ack fields, words the refusal line must carry)
BAD: list[tuple[str, dict[str, object], str]] = [
    ("router-off-subnet", {"yiaddr": "10.77.0.61", "routers": ("192.168.50.1",)},
     "router 192.168.50.1 is outside 10.77.0.0/24"),
    ("mask-zero", {"yiaddr": "10.77.0.62", "mask": "0.0.0.0"}, "wider than /8"),
    ("server-address", {"yiaddr": "10.77.0.1"}, "is the server's own address"),
    ("broadcast-address", {"yiaddr": "10.77.0.255"}, "broadcast address of 10.77.0.0/24"),
    ("network-address", {"yiaddr": "10.77.0.0"}, "network address of 10.77.0.0/24"),
    ("router-is-address", {"yiaddr": "10.77.0.63", "routers": ("10.77.0.63",)},
     "router 10.77.0.63 is the offered address itself"),
    ("long-domain", {"yiaddr": "10.77.0.64", "extra": long_option(15, LONG_DOMAIN)},
     "domain name of 1200 bytes"),
    ("long-label", {"yiaddr": "10.77.0.65", "extra": ((15, b"b" * 64 + b".example"),)},
     "label of 64 bytes"),
    ("long-search-name", {"yiaddr": "10.77.0.69",
                          "extra": long_option(119, dns_name(".".join(["c" * 63] * 5)))},
     "domain search name longer than 255 bytes"),
    ("bad-route121", {"yiaddr": "10.77.0.66", "extra": ((121, b"\x18\x0a\x4d"),)},
     "classless static route"),
    ("route121-gateway-off-subnet", {"yiaddr": "10.77.0.67", "extra": (
        (121, route121((0, b"", "10.99.0.1"))),)}, "route 0.0.0.0/0 gateway 10.99.0.1"),
    ("non-contiguous-mask", {"yiaddr": "10.77.0.68", "mask": "255.0.255.0"},
     "not contiguous"),
]


def other_mac(mac: str) -> str:
    """Another unicast MAC than `mac` (hex, no colons). "02" + mac[2:] was the node's own
    whenever the kernel's random veth MAC began 02 (1 in 64: CI once took the offer as ours)."""
    return f"{int(mac[:2], 16) ^ 0x04:02x}" + mac[2:]


def assert_nothing_configured(ns: str) -> None:
    assert addresses(ns, "eth0") == []
    assert main_routes(ns) == []


@pytest.mark.parametrize("half", [0, 1])
def test_bad_offers_ignored_each_with_its_reason(lan: Lan, node_ns: str, start_node: Start,
                                                 half: int) -> None:
    """Finding: such offers were configured as given, and nothing said why one was not.

    Half the classes per run: a burst of more than 10 refusals is cut by the console
    rate limit (that is tested below)."""
    lan.plug(node_ns, "eth0")
    mac = mac_of(node_ns, "eth0").replace(":", "")
    classes = BAD[:6] if half == 0 else BAD[6:]
    bad = [reply("OFFER", **kw) for _, kw, _ in classes]  # type: ignore[arg-type]
    # Good offers that are not ours: another transaction, another MAC, and garbage.
    strays = [reply("OFFER", "10.77.0.98", xid_delta=1),
              reply("OFFER", "10.77.0.99", chaddr=other_mac(mac)),
              reply("OFFER", "10.77.0.97", truncate=250)]
    # The sound lease at the end has more DNS servers than glibc reads, and a search list.
    dns = ("10.77.0.1", "10.77.0.2", "0.0.0.0", "10.77.0.3", "10.77.0.4")
    names = ((15, b"lab.example"), (119, dns_name("eng.example")))
    good = [reply("OFFER", GOOD)], [reply("ACK", GOOD, dns=dns, extra=names)]
    the_plan = plan(lan.bridge, [{"offers": bad + strays},
                                 {"offers": good[0], "acks": good[1]}])
    with lan.rogue(the_plan) as log:
        node = start_node(node_ns, "--cmdline", HUB, "--network-only")
        _, _, line = node.wait_line("chose eth0", 40)
        text = node.text()
        requested = {e["requested"] for e in log.received("REQUEST")}
    assert node.proc.poll() is None
    assert f"address {GOOD}/24" in line
    for name, kw, why in classes:
        refusals = [x for x in text.splitlines()
                    if f"refused OFFER of {kw['yiaddr']} " in x and why in x]
        assert len(refusals) == 1, (name, text)  # once, with its reason
    assert "refused reply: option" in text  # the truncated one was ours: said once
    assert "10.77.0.98" not in text and "10.77.0.99" not in text  # not ours: silent
    assert requested == {GOOD}
    assert addresses(node_ns, "eth0") == [f"{GOOD}/24"]
    index = int(run(nsexec(node_ns, "cat", "/sys/class/net/eth0/ifindex")).stdout)
    assert main_routes(node_ns) == [
        "default via 10.77.0.1 dev eth0 proto static",
        f"default via 10.77.0.1 dev eth0 proto static metric {1000 + index}",
        f"10.77.0.0/24 dev eth0 proto kernel scope link src {GOOD}"]
    assert "eth0: lease 10.77.0.60: dns: kept 3 of 5 servers (2 dropped" in text
    assert (lan.tmp / "resolv.conf").read_text() == (
        "# written by zosnode from its DHCP lease\nsearch lab.example eng.example\n"
        "nameserver 10.77.0.1\nnameserver 10.77.0.2\nnameserver 10.77.0.3\n")


@pytest.mark.parametrize("name,kw,why", BAD, ids=[b[0] for b in BAD])
def test_bad_ack_is_declined_and_the_node_lives_on(lan: Lan, node_ns: str, start_node: Start,
                                                   name: str, kw: dict[str, object],
                                                   why: str) -> None:
    """Finding: a router off the subnet (or a /0 mask) ended in a fatal NetSystemError."""
    lan.plug(node_ns, "eth0")
    addr = str(kw["yiaddr"])
    offer = reply("OFFER", "10.77.0.70")  # a sound offer, then an ACK that is not
    the_plan = plan(lan.bridge, [{"offers": [offer], "acks": [reply("ACK", **kw)]},  # type: ignore[arg-type]
                                 {"offers": [reply("OFFER", GOOD)],
                                  "acks": [reply("ACK", GOOD)]}])
    with lan.rogue(the_plan) as log:
        node = start_node(node_ns, "--cmdline", HUB, "--network-only")
        # (wait_line fails at once, with the console, if the node dies instead)
        _, _, line = node.wait_line(f"refused ACK of {addr}", 30)
        assert why in line
        (decline,) = log.wait("DECLINE", 5)
        node.wait_line(f"declined {addr}: ", 5)
        assert node.proc.poll() is None, node.text()
        assert_nothing_configured(node_ns)
        assert (decline["requested"], decline["server_id"]) == (addr, "10.77.0.1")
        if name == "router-off-subnet":
            # After RFC 2131's 10 s the node asks again, and takes a sound lease.
            node.wait_line("chose eth0", 25)
            assert addresses(node_ns, "eth0") == [f"{GOOD}/24"]
            (request,) = [e for e in log.received("REQUEST") if e["requested"] == GOOD]
            assert float(request["t"]) - float(decline["t"]) >= 9.0  # type: ignore[arg-type]
    assert not (lan.tmp / "resolv.conf").exists() or "a" * 60 not in (
        lan.tmp / "resolv.conf").read_text()


def test_nak_floods_and_stray_replies(lan: Lan, node_ns: str, start_node: Start) -> None:
    """A flood of NAKs (from our server, then from another one), replies for other
    transactions: the node starts over once, ignores the rest, logs under its limit."""
    lan.plug(node_ns, "eth0")
    mac = mac_of(node_ns, "eth0").replace(":", "")
    ours = reply("NAK", count=50)
    others = reply("NAK", server="10.77.0.2", count=50)
    strays = [reply("ACK", "10.77.0.90", xid_delta=7, count=20),
              reply("ACK", "10.77.0.91", chaddr=other_mac(mac), count=20)]
    the_plan = plan(lan.bridge, [
        {"offers": [reply("OFFER", GOOD)], "acks": [ours] + strays},
        {"offers": [reply("OFFER", GOOD)], "acks": [others] + strays + [reply("ACK", GOOD)]},
    ])
    with lan.rogue(the_plan):
        node = start_node(node_ns, "--cmdline", HUB, "--network-only")
        node.wait_line("dhcp requesting -> init (NAK)", 30)
        node.wait_line("chose eth0", 30)
        # The flood's window closes 10 s after its first line: then the summary.
        _, _, summary = node.wait_line("more refusals suppressed", 15)
    text = node.text()
    assert node.proc.poll() is None
    assert text.count("-> init (NAK)") == 1  # 49 more NAKs of a finished exchange: ignored
    refused = [x for x in text.splitlines() if "refused NAK from 10.77.0.2" in x]
    assert len(refused) == 10 and all("we asked 10.77.0.1" in x for x in refused)
    assert re.search(r"eth0: dhcp: 40 more refusals suppressed \(at most 10 lines per 10s\)",
                     summary), summary
    assert "10.77.0.90" not in text and "10.77.0.91" not in text
    assert addresses(node_ns, "eth0") == [f"{GOOD}/24"]
