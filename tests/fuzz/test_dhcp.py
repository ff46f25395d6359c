"""Fuzz targets `dhcp`, `dhcp-options`, `arp`: what the node decodes from any host on its segment.

`dhcp`: any bytes are decoded or refused with `PacketError`; a decoded
message re-encodes to itself (when it fits a packet), gets a verdict from
`lease_check.check` (never another exception), and is then fed as a reply
for the current exchange to a client selecting, requesting and renewing,
which may only answer with its own events.
`dhcp-options`: option 121 and option 119 parsers, `PacketError` or a value.
`arp`: the ARP decoder and the probe, which only ever reach a verdict.
"""

from __future__ import annotations

import ipaddress
import random

from hypothesis import strategies as st

from tests.fuzz.budget import Target, fuzz, replay
from tests.fuzz.mutate import mutated
from zosnode.net import arp, dhcp_client, lease_check
from zosnode.net import dhcp_wire as w
from zosnode.net.dhcp_client import DhcpClient, Event, Probe, State, Timing, Transmit
from zosnode.net.errors import PacketError

MAC = bytes.fromhex("525400abcdef")
ip = ipaddress.IPv4Address


def _reply(kind: w.MsgType, xid: int = 1, extra: tuple[tuple[int, bytes], ...] = ()) -> bytes:
    opts: tuple[tuple[int, bytes], ...] = (
        (53, bytes([kind])), (54, ip("10.9.0.1").packed), (1, ip("255.255.255.0").packed),
        (3, ip("10.9.0.1").packed), (6, ip("10.9.0.2").packed), (51, (600).to_bytes(4, "big")),
    ) + extra
    return w.encode(w.Message(op=w.BOOTREPLY, xid=xid, chaddr=MAC, options=opts,
                              yiaddr="10.9.0.50"))


def _terms_ok(t: lease_check.Terms) -> None:
    """What `lease_check` promises of every reply it passes (checked at that one boundary)."""
    ip(t.address)
    assert lease_check.MIN_PREFIX <= t.prefixlen <= 32 and len(t.dns) <= lease_check.MAX_DNS
    for route in t.routes:
        ipaddress.IPv4Network(route.destination)
        assert route.gateway is None or ip(route.gateway)
    # Names go to resolv.conf unchecked again: no newline or other byte of a line of its own.
    for name in ((t.domain,) if t.domain else ()) + t.search:
        assert len(name) <= 253 and all(c.isascii() and (c.isalnum() or c in ".-_") for c in name)


def _events_ok(events: list[Event]) -> None:
    assert isinstance(events, list)
    for e in events:
        if isinstance(e, dhcp_client.Bound | dhcp_client.Renewed):
            _terms_ok(e.lease)
            assert 0 < e.lease.t1_s <= e.lease.t2_s <= e.lease.lease_s


def _as_reply_to(data: bytes, xid: int) -> bytes:
    """`data` with the xid and chaddr of the client's exchange, so it gets past the filter."""
    if len(data) < 34:
        return data
    return data[:4] + xid.to_bytes(4, "big") + data[8:28] + MAC + data[34:]


def _sent_xid(events: list[Event]) -> int:
    (data,) = [e.data for e in events if isinstance(e, Transmit)]
    return w.decode(data).xid


def _client_in(state: State) -> tuple[DhcpClient, int]:
    """A client in `state`, and the xid a reply must carry to be taken for this exchange."""
    c = DhcpClient(MAC, random.Random(0), Timing())
    xid = _sent_xid(c.start(0.0))
    if state is State.SELECTING:
        return c, xid
    c.receive(_reply(w.MsgType.OFFER, xid), 0.5)
    if state is State.REQUESTING:
        return c, xid
    evs = c.receive(_reply(w.MsgType.ACK, xid), 0.6)
    assert any(isinstance(e, Probe) for e in evs)
    c.probed(None, 0.7)
    xid = _sent_xid(c.timeout(c.deadline or 0.0))  # T1: renewing, with a new xid
    assert c.state is State.RENEWING
    return c, xid


def check_dhcp(data: bytes) -> None:
    try:
        msg = w.decode(data)
    except PacketError:
        msg = None
    if msg is not None:
        again = w.encode(msg)
        if len(again) <= w.MAX_MESSAGE:
            assert w.decode(again) == msg, "a decoded message re-encodes differently"
        try:
            _terms_ok(lease_check.check(msg))
        except PacketError as exc:
            assert str(exc)
    for state in (State.SELECTING, State.REQUESTING, State.RENEWING):
        c, xid = _client_in(state)
        events = c.receive(_as_reply_to(data, xid), 1.0)
        _events_ok(events)
        if any(isinstance(e, Probe) for e in events):
            _events_ok(c.probed("in use by 02:00:00:00:00:01 (ARP reply)", 1.5))


def check_options(data: bytes) -> None:
    for parse in (w.classless_routes, w.domain_search):
        try:
            parse(data)
        except PacketError:
            pass


def check_arp(data: bytes) -> None:
    arp.decode(data)
    probe = arp.ArpProbe(MAC, "10.9.0.50", random.Random(0), 0.0)
    probe.timeout(probe.deadline or 0.0)
    probe.receive(data, 0.05)
    while probe.verdict is None:
        assert probe.deadline is not None
        probe.timeout(probe.deadline)


DHCP = Target("dhcp", check_dhcp)
OPTIONS = Target("dhcp-options", check_options)
ARP = Target("arp", check_arp)

_ROUTES = bytes([0, 10, 9, 0, 1, 24, 172, 20, 5, 10, 9, 0, 1, 32, 10, 9, 0, 7, 0, 0, 0, 0])
_SEARCH = b"\x03eng\x07example\x03com\x00\x03ops\xc0\x04"
SEEDS = [
    _reply(w.MsgType.OFFER),
    _reply(w.MsgType.ACK, extra=((121, _ROUTES), (119, _SEARCH), (15, b"lab.example"),
                                 (58, (300).to_bytes(4, "big")))),
    _reply(w.MsgType.NAK),
]
ARP_SEEDS = [
    arp.encode(arp.Packet(arp.REPLY, bytes(range(6)), ip("10.9.0.50").packed, MAC, bytes(4))),
    arp.encode(arp.Packet(arp.REQUEST, bytes(range(6)), bytes(4), bytes(6),
                          ip("10.9.0.50").packed)),
]

# Structured: a reply of random options, so most inputs reach the judge.
_OPTION = st.tuples(
    st.sampled_from((1, 3, 6, 15, 51, 52, 53, 54, 58, 59, 119, 121, 2, 250)),
    st.one_of(st.binary(max_size=12), st.sampled_from((b"\xff\xff\xff\x00", b"\x00" * 4,
                                                       b"\x0a\x09\x00\x01", b"\x02",
                                                       b"\x05", _ROUTES, _SEARCH))))
_MESSAGES = st.builds(
    lambda opts, yi: w.encode(w.Message(op=w.BOOTREPLY, xid=1, chaddr=MAC,
                                        options=((53, b"\x05"), *opts), yiaddr=yi)),
    st.lists(_OPTION, max_size=12),
    st.sampled_from(("10.9.0.50", "10.9.0.0", "10.9.0.255", "10.9.0.1", "0.0.0.0",
                     "255.255.255.255", "192.168.1.1")),
)

test_dhcp_regressions = replay(DHCP)
test_dhcp_mutated = fuzz(DHCP, mutated(SEEDS))
test_dhcp_options = fuzz(DHCP, _MESSAGES)
test_dhcp_raw = fuzz(DHCP, st.binary(max_size=600))
test_dhcp_options_regressions = replay(OPTIONS)
test_dhcp_options_mutated = fuzz(OPTIONS, mutated([_ROUTES, _SEARCH]))
test_arp_regressions = replay(ARP)
test_arp_mutated = fuzz(ARP, mutated(ARP_SEEDS))
