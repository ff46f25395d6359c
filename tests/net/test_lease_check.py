"""Lease validation: every rule, each refusal with its reason, the notes of what was dropped."""

from __future__ import annotations

import ipaddress

import pytest

from zosnode.net import dhcp_wire as w
from zosnode.net import lease_check
from zosnode.net.dhcp_wire import Route
from zosnode.net.errors import PacketError
from zosnode.net.lease_check import Terms

MAC = bytes.fromhex("525400abcdef")
ip = ipaddress.IPv4Address


def route121(*routes: tuple[str, str]) -> bytes:
    out = b""
    for dest, gw in routes:
        net = ipaddress.IPv4Network(dest)
        out += bytes([net.prefixlen]) + net.network_address.packed[:(net.prefixlen + 7) // 8]
        out += ip(gw).packed
    return out


def dns_name(name: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"


def reply(yiaddr: str = "10.9.0.50", server: str | None = "10.9.0.1",
          mask: str | bytes | None = "255.255.255.0", routers: tuple[str, ...] = ("10.9.0.1",),
          dns: tuple[str, ...] = ("10.9.0.2",), lease: int | None = 600,
          kind: w.MsgType = w.MsgType.ACK,
          extra: tuple[tuple[int, bytes], ...] = ()) -> w.Message:
    opts: list[tuple[int, bytes]] = [(53, bytes([kind]))]
    if server is not None:
        opts.append((54, ip(server).packed))
    if mask is not None:
        opts.append((1, mask if isinstance(mask, bytes) else ip(mask).packed))
    if routers:
        opts.append((3, b"".join(ip(r).packed for r in routers)))
    if dns:
        opts.append((6, b"".join(ip(d).packed for d in dns)))
    if lease is not None:
        opts.append((51, lease.to_bytes(4, "big")))
    opts += extra
    return w.Message(op=w.BOOTREPLY, xid=1, chaddr=MAC, options=tuple(opts), yiaddr=yiaddr)


def check(msg: w.Message) -> Terms | PacketError:
    """The verdict as a value: the terms, or the PacketError raised."""
    try:
        return lease_check.check(msg)
    except PacketError as exc:
        return exc


def usable(v: Terms | PacketError) -> Terms:
    assert isinstance(v, Terms), v
    return v


def refused(v: Terms | PacketError, *words: str) -> None:
    assert isinstance(v, PacketError), v
    for word in words:
        assert word in str(v), v


def test_a_plain_lease_is_usable_as_given() -> None:
    t = usable(check(reply()))
    assert (t.address, t.prefixlen, t.server, t.routers, t.dns, t.lease_s) == (
        "10.9.0.50", 24, "10.9.0.1", ("10.9.0.1",), ("10.9.0.2",), 600)
    assert t.notes == () and t.routes == () and t.domain is None


def test_router_outside_the_subnet_is_refused() -> None:
    """Finding: the kernel answered 'Network is unreachable' and the node rebooted."""
    refused(check(reply(routers=("192.168.5.1",))), "router 192.168.5.1", "outside 10.9.0.0/24")
    refused(check(reply(routers=("10.9.0.1", "10.10.0.1"))), "10.10.0.1")


@pytest.mark.parametrize("mask", ["0.0.0.0", "128.0.0.0", "254.0.0.0"])
def test_a_mask_wider_than_8_is_refused(mask: str) -> None:
    refused(check(reply(mask=mask)), "subnet mask", "wider than /8")
    refused(check(reply(mask=mask, routers=())), "wider than /8")


def test_non_contiguous_or_missing_or_malformed_mask() -> None:
    refused(check(reply(mask="255.0.255.0")), "not contiguous")
    refused(check(reply(mask=None)), "no subnet mask")
    refused(check(reply(mask=b"\xff\xff")), "subnet mask option of 2 bytes")


def test_address_rules() -> None:
    refused(check(reply(yiaddr="10.9.0.1")), "server's own address")
    refused(check(reply(yiaddr="10.9.0.255")), "broadcast address of 10.9.0.0/24")
    refused(check(reply(yiaddr="10.9.0.0")), "network address of 10.9.0.0/24")
    for bad in ("0.0.0.0", "0.1.2.3", "127.0.0.1", "224.0.0.1", "240.0.0.1",
                "255.255.255.255", "169.254.1.1"):
        refused(check(reply(yiaddr=bad, routers=())), "not a host address")


def test_point_to_point_and_host_masks_have_no_network_or_broadcast() -> None:
    t = usable(check(reply(yiaddr="10.9.0.0", mask="255.255.255.254", routers=("10.9.0.1",))))
    assert t.prefixlen == 31
    usable(check(reply(yiaddr="10.9.0.1", mask="255.255.255.254", routers=(),
                       server="10.9.9.9")))


def test_router_equal_to_the_offered_address_or_not_a_host() -> None:
    refused(check(reply(routers=("10.9.0.50",))), "router 10.9.0.50 is the offered address")
    refused(check(reply(routers=("10.9.0.255",))), "network or broadcast")
    refused(check(reply(routers=("10.9.0.0",))), "network or broadcast")
    refused(check(reply(routers=("255.255.255.255",))), "not a unicast")


def test_server_identifier_rules() -> None:
    refused(check(reply(server=None)), "no server identifier")
    refused(check(reply(server="255.255.255.255")), "not a unicast")
    refused(check(reply(server="0.0.0.0")), "not a unicast")
    # A repeated option is concatenated (RFC 3396): 4 + 1 bytes is no address.
    refused(check(reply(extra=((54, b"\x01"),))), "server identifier option of 5 bytes")
    # A server behind a relay lives elsewhere: that is fine.
    assert usable(check(reply(server="172.16.0.1"))).server == "172.16.0.1"


def test_ack_needs_a_lease_time_offer_does_not() -> None:
    refused(check(reply(lease=None)), "ACK without a lease time")
    assert usable(check(reply(lease=None, kind=w.MsgType.OFFER))).lease_s is None
    refused(check(reply(kind=w.MsgType.NAK)), "not an OFFER or ACK")
    refused(check(reply(extra=((51, b"\x00\x01"),))), "lease time option")


def test_malformed_address_lists() -> None:
    refused(check(reply(extra=((3, b"\x0a\x09"),))), "router option of 6 bytes")
    refused(check(reply(extra=((6, b"\x0a"),))), "DNS server option of 5 bytes")


def test_at_most_three_dns_servers_and_unusable_ones_dropped_in_one_note() -> None:
    dns = ("10.9.0.2", "10.9.0.3", "0.0.0.0", "10.9.0.4", "10.9.0.2", "10.9.0.5")
    t = usable(check(reply(dns=dns)))
    assert t.dns == ("10.9.0.2", "10.9.0.3", "10.9.0.4")
    (note,) = t.notes
    assert note.startswith("dns: kept 3 of 6 servers (3 dropped")


def test_domain_name_lengths_and_characters() -> None:
    """Finding: a 1,200-byte domain went into resolv.conf."""
    long = ".".join(["a" * 60] * 20)  # 1,219 bytes
    opts = tuple((15, long.encode()[i:i + 255]) for i in range(0, len(long), 255))
    refused(check(reply(extra=opts)), "domain name of 1219 bytes")
    refused(check(reply(extra=((15, b"a" * 64 + b".example"),))), "label of 64 bytes")
    refused(check(reply(extra=((15, b"ok.example\nnameserver 6.6.6.6"),))), "characters")
    refused(check(reply(extra=((15, b"a..b"),))), "empty label")
    name = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 253 bytes: the limit
    assert usable(check(reply(extra=((15, name.encode()),)))).domain == name
    t = usable(check(reply(extra=((15, b"lab.example.\x00"),))))
    assert t.domain == "lab.example"


def test_search_list_decoded_with_compression_and_judged() -> None:
    raw = dns_name("eng.example.com") + b"\x03ops\xc0\x04"  # ops.example.com via a pointer
    t = usable(check(reply(extra=((119, raw),))))
    assert t.search == ("eng.example.com", "ops.example.com")
    refused(check(reply(extra=((119, dns_name("x" * 64 + ".com")),))), "domain search")
    refused(check(reply(extra=((119, b"\x03abc\xc0\x00"),))), "pointer")  # a loop
    many = b"".join(dns_name(f"d{i}.example") for i in range(8))
    t = usable(check(reply(extra=((119, many),))))
    assert len(t.search) == 6 and t.notes[0].startswith("search: kept 6 of 8")
    refused(check(reply(extra=((119, dns_name("bad name.example")),))), "characters")


def test_classless_routes_reach_an_off_subnet_router() -> None:
    # A /32 lease as clouds give it: the gateway is reached by an on-link route.
    opt = route121(("10.128.0.1/32", "0.0.0.0"), ("0.0.0.0/0", "10.128.0.1"),
                   ("172.20.0.0/16", "10.128.0.1"))
    t = usable(check(reply(yiaddr="10.128.0.9", mask="255.255.255.255", routers=("10.128.0.1",),
                           server="169.254.169.254", extra=((121, opt),))))
    assert t.routers == ("10.128.0.1",)
    assert t.routes == (Route("10.128.0.1/32", None), Route("172.20.0.0/16", "10.128.0.1"))
    # Without option 121 the same router is refused.
    refused(check(reply(yiaddr="10.128.0.9", mask="255.255.255.255",
                        routers=("10.128.0.1",))), "outside 10.128.0.9/32")


def test_classless_routes_replace_option_3_and_are_judged() -> None:
    # RFC 3442: with option 121 present, option 3 is ignored (even a bad one).
    opt = route121(("0.0.0.0/0", "10.9.0.254"))
    t = usable(check(reply(routers=("192.168.1.1",), extra=((121, opt),))))
    assert t.routers == ("10.9.0.254",) and t.routes == ()
    refused(check(reply(extra=((121, route121(("0.0.0.0/0", "10.20.0.1"))),))), "outside")
    refused(check(reply(extra=((121, route121(("0.0.0.0/0", "10.9.0.50"))),))),
            "offered address itself")
    refused(check(reply(extra=((121, route121(("0.0.0.0/0", "0.0.0.0"))),))),
            "whole Internet on-link")
    refused(check(reply(extra=((121, route121(("127.0.0.0/8", "10.9.0.1"))),))), "loopback")
    refused(check(reply(extra=((121, route121(("224.1.0.0/16", "10.9.0.1"))),))), "multicast")
    refused(check(reply(extra=((121, b"\x18\x0a\x09"),))), "classless static route")
    refused(check(reply(extra=((121, b"\x21" + bytes(8)),))), "width 33")
    refused(check(reply(extra=((121, b"\x08\x0a\x0a\x09\x00"),))), "runs past")
    refused(check(reply(extra=((121, b"\x10\x0a\x09\x80" + ip("10.9.0.1").packed),))),
            "runs past")
    refused(check(reply(extra=((121, b"\x0f\x0a\x09" + ip("10.9.0.1").packed),))),
            "host bits")
    many = route121(*[(f"10.{100 + i}.0.0/16", "10.9.0.1") for i in range(65)])
    opts = tuple((121, many[i:i + 255]) for i in range(0, len(many), 255))
    refused(check(reply(extra=opts)), "65 classless static routes")
