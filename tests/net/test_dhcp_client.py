"""The DHCP client state machine, without sockets: every transition and timer."""

from __future__ import annotations

import ipaddress
import math
import random

import pytest
import trio

from zosnode.net import dhcp_wire as w
from zosnode.net.dhcp_client import (
    BROADCAST,
    Bound,
    DhcpClient,
    LeaseLost,
    Probe,
    Refused,
    Renewed,
    State,
    StateChanged,
    Timing,
    Transmit,
)
from zosnode.net.errors import NetUsageError

MAC = bytes.fromhex("525400abcdef")
SERVER = "10.9.0.1"


def sent(events: list[object]) -> list[w.Message]:
    return [w.decode(e.data) for e in events if isinstance(e, Transmit)]


def answer(req: w.Message, kind: w.MsgType, yiaddr: str = "10.9.0.50", lease: int = 100,
           server: str = SERVER, extra: tuple[tuple[int, bytes], ...] = (),
           mask: bytes = bytes([255, 255, 255, 0]), xid: int | None = None,
           chaddr: bytes | None = None) -> bytes:
    ip = ipaddress.IPv4Address
    opts: list[tuple[int, bytes]] = [(53, bytes([kind])), (54, ip(server).packed)]
    if kind is not w.MsgType.NAK:
        opts += [(1, mask), (3, ip(SERVER).packed), (6, ip("10.9.0.2").packed),
                 (51, lease.to_bytes(4, "big"))]
    opts += list(extra)
    return w.encode(w.Message(op=w.BOOTREPLY, xid=req.xid if xid is None else xid,
                              chaddr=chaddr or MAC, options=tuple(opts),
                              yiaddr=yiaddr if kind is not w.MsgType.NAK else "0.0.0.0"))


def recv(c: DhcpClient, data: bytes, now: float) -> list[object]:
    """`receive`, with the ARP probe of a new address answered "nobody there"."""
    ev: list[object] = list(c.receive(data, now))
    if any(isinstance(e, Probe) for e in ev):
        ev += c.probed(None, now)
    return ev


def client(**timing: float) -> DhcpClient:
    return DhcpClient(MAC, random.Random(1), Timing(**timing))  # type: ignore[arg-type]


def bind(c: DhcpClient, now: float = 0.0, **kw: object) -> list[object]:
    (disc,) = sent(c.start(now))
    (req,) = sent(recv(c, answer(disc, w.MsgType.OFFER), now + 1.0))
    return recv(c, answer(req, w.MsgType.ACK, **kw), now + 1.2)  # type: ignore[arg-type]


def test_discover_offer_request_ack() -> None:
    c = client()
    ev = c.start(0.0)
    assert [e.new for e in ev if isinstance(e, StateChanged)] == [State.INIT, State.SELECTING]
    (disc,) = sent(ev)
    assert disc.msg_type is w.MsgType.DISCOVER and disc.flags & w.FLAG_BROADCAST
    assert disc.get(61) == b"\x01" + MAC
    assert ev[-1] == Transmit(ev[-1].data, BROADCAST)  # type: ignore[union-attr]
    ev = recv(c, answer(disc, w.MsgType.OFFER), 1.0)
    (req,) = sent(ev)
    assert c.state is State.REQUESTING
    assert req.msg_type is w.MsgType.REQUEST and req.xid == disc.xid
    assert req.addr(50) == "10.9.0.50" and req.addr(54) == SERVER
    ev = recv(c, answer(req, w.MsgType.ACK), 1.5)
    (bound,) = [e for e in ev if isinstance(e, Bound)]
    assert c.state is State.BOUND
    lease = bound.lease
    assert (lease.address, lease.prefixlen, lease.routers, lease.dns) == (
        "10.9.0.50", 24, (SERVER,), ("10.9.0.2",))
    # Lease times count from when the REQUEST went out (RFC 2131 §4.4.1).
    assert (lease.t1_s, lease.t2_s, lease.renew_at, lease.expires_at) == (50, 87, 51.0, 101.0)
    assert c.deadline == 51.0


def test_server_t1_t2_honoured_and_inconsistent_ones_replaced() -> None:
    c = client()
    bind(c, extra=((58, (10).to_bytes(4, "big")), (59, (20).to_bytes(4, "big"))))
    assert c.lease is not None and (c.lease.t1_s, c.lease.t2_s) == (10, 20)
    c = client()
    bind(c, extra=((58, (90).to_bytes(4, "big")), (59, (20).to_bytes(4, "big"))))
    assert c.lease is not None and (c.lease.t1_s, c.lease.t2_s) == (50, 87)


def test_tiny_lease_is_clamped_and_infinite_never_renews() -> None:
    c = client()
    bind(c, lease=0)
    assert c.lease is not None and c.lease.lease_s == Timing().min_lease
    c = client()
    bind(c, lease=0xFFFFFFFF)
    assert c.lease is not None and c.lease.infinite and c.deadline is None
    assert c.timeout(1e12) == []


def test_renew_at_t1_unicast_then_ack() -> None:
    c = client()
    bind(c)
    assert c.timeout(50.0) == []  # before T1: nothing
    ev = c.timeout(51.0)
    (req,) = sent(ev)
    assert c.state is State.RENEWING
    assert [e.destination for e in ev if isinstance(e, Transmit)] == [SERVER]
    assert req.ciaddr == "10.9.0.50" and req.get(50) is None and req.get(54) is None
    assert not req.flags & w.FLAG_BROADCAST
    ev = recv(c, answer(req, w.MsgType.ACK), 52.0)
    assert any(isinstance(e, Renewed) for e in ev) and c.state is State.BOUND
    assert c.lease is not None and c.lease.start == 51.0 and c.deadline == 101.0


def test_renew_retransmission_waits_half_the_remaining_time_with_floor() -> None:
    c = client(renew_floor=5)
    bind(c)
    c.timeout(51.0)  # RENEWING, T2 at 88
    assert c.deadline == pytest.approx(51 + (88 - 51) / 2)
    c.timeout(c.deadline)
    assert c.deadline == pytest.approx(69.5 + (88 - 69.5) / 2)
    # The floor never pushes the next try past T2.
    c.timeout(85.0)
    assert c.deadline == 88.0


def test_rebind_at_t2_broadcasts_and_expiry_goes_back_to_discovery() -> None:
    c = client(renew_floor=1000)
    bind(c)
    c.timeout(51.0)
    assert c.deadline == 88.0
    ev = c.timeout(88.0)
    assert c.state is State.REBINDING
    assert [e.destination for e in ev if isinstance(e, Transmit)] == [BROADCAST]
    (req,) = sent(ev)
    assert req.ciaddr == "10.9.0.50"
    assert c.deadline == 101.0
    ev = c.timeout(101.0)
    lost = [e for e in ev if isinstance(e, LeaseLost)]
    assert lost and lost[0].reason == "lease expired"
    assert c.state is State.SELECTING and c.lease is None
    assert sent(ev)[0].msg_type is w.MsgType.DISCOVER


def test_rebinding_ack_from_another_server_keeps_address() -> None:
    c = client(renew_floor=1000)
    bind(c)
    c.timeout(51.0)
    (req,) = sent(c.timeout(88.0))
    ev = recv(c, answer(req, w.MsgType.ACK, server="10.9.0.7"), 89.0)
    assert any(isinstance(e, Renewed) for e in ev)
    assert c.lease is not None and c.lease.server == "10.9.0.7"


def test_ack_moving_us_to_another_address_is_loss_then_bind() -> None:
    c = client()
    bind(c)
    (req,) = sent(c.timeout(51.0))
    ev = recv(c, answer(req, w.MsgType.ACK, yiaddr="10.9.0.77"), 52.0)
    kinds = [type(e) for e in ev if not isinstance(e, StateChanged)]
    assert kinds == [LeaseLost, Probe, Bound]  # the new address is probed first
    assert c.lease is not None and c.lease.address == "10.9.0.77"


@pytest.mark.parametrize("stage", ["requesting", "renewing"])
def test_nak_drops_lease_and_restarts_after_a_pause(stage: str) -> None:
    c = client()
    (disc,) = sent(c.start(0.0))
    (req,) = sent(recv(c, answer(disc, w.MsgType.OFFER), 1.0))
    if stage == "renewing":
        recv(c, answer(req, w.MsgType.ACK), 1.0)
        (req,) = sent(c.timeout(51.0))
    now = c.deadline or 0.0 if stage == "requesting" else 52.0
    ev = recv(c, answer(req, w.MsgType.NAK), now)
    assert c.state is State.INIT and c.lease is None and sent(ev) == []
    assert any(isinstance(e, LeaseLost) for e in ev) == (stage == "renewing")
    assert c.deadline == now + Timing().nak_delay
    ev = c.timeout(c.deadline)
    assert c.state is State.SELECTING and sent(ev)[0].msg_type is w.MsgType.DISCOVER
    assert sent(ev)[0].xid != req.xid


def test_nak_from_another_server_is_ignored() -> None:
    c = client()
    (disc,) = sent(c.start(0.0))
    (req,) = sent(recv(c, answer(disc, w.MsgType.OFFER), 1.0))
    (refused,) = recv(c, answer(req, w.MsgType.NAK, server="10.9.0.66"), 1.1)
    assert refused == Refused("NAK from 10.9.0.66", f"we asked {SERVER}")
    assert c.state is State.REQUESTING


def test_init_reboot_after_link_flap_and_nak_fallback() -> None:
    c = client()
    bind(c)
    ev = c.link_down(10.0)
    assert [type(e) for e in ev if not isinstance(e, StateChanged)] == [LeaseLost]
    assert c.state is State.STOPPED and c.deadline is None and c.timeout(1e9) == []
    ev = c.start(20.0)
    assert c.state is State.REBOOTING
    (req,) = sent(ev)
    assert req.addr(50) == "10.9.0.50" and req.get(54) is None and req.ciaddr == "0.0.0.0"
    assert any(isinstance(e, Bound) for e in recv(c, answer(req, w.MsgType.ACK), 20.5))
    c.link_down(30.0)
    (req,) = sent(c.start(31.0))
    recv(c, answer(req, w.MsgType.NAK), 31.1)
    assert c.state is State.INIT
    (disc,) = sent(c.timeout(40.0))
    assert disc.msg_type is w.MsgType.DISCOVER and disc.get(50) is None


def test_init_reboot_gives_up_after_tries() -> None:
    c = client(request_tries=2)
    bind(c)
    c.link_down(10.0)
    ev = c.start(20.0)
    assert c.state is State.REBOOTING and len(sent(ev)) == 1
    assert len(sent(c.timeout(c.deadline or 0))) == 1
    ev = c.timeout(c.deadline or 0)
    assert c.state is State.SELECTING and sent(ev)[0].msg_type is w.MsgType.DISCOVER


def test_requesting_gives_up_after_tries() -> None:
    c = client(request_tries=3)
    (disc,) = sent(c.start(0.0))
    recv(c, answer(disc, w.MsgType.OFFER), 0.5)
    for _ in range(2):
        assert sent(c.timeout(c.deadline or 0))[0].msg_type is w.MsgType.REQUEST
    assert sent(c.timeout(c.deadline or 0))[0].msg_type is w.MsgType.DISCOVER


def test_link_back_without_history_discovers() -> None:
    c = client()
    c.start(0.0)
    c.link_down(1.0)
    assert c.start(2.0) and c.state is State.SELECTING
    with pytest.raises(NetUsageError):  # already running
        c.start(3.0)


def test_misuse_is_our_error() -> None:
    with pytest.raises(NetUsageError):
        DhcpClient(b"\x00", random.Random(0))
    with pytest.raises(NetUsageError):
        Timing(initial=4, max_backoff=2)
    c = client()
    c.start(0.0)
    with pytest.raises(NetUsageError):
        c.start(1.0)


def test_hostile_and_stray_replies_are_dropped() -> None:
    c = client()
    (disc,) = sent(c.start(0.0))
    good = answer(disc, w.MsgType.OFFER)
    hostile = [
        answer(disc, w.MsgType.OFFER, xid=disc.xid ^ 1),  # wrong xid
        answer(disc, w.MsgType.OFFER, chaddr=b"\x02" * 6),  # someone else's
        answer(disc, w.MsgType.ACK),  # ACK while selecting
        answer(disc, w.MsgType.OFFER, yiaddr="0.0.0.0"),
        answer(disc, w.MsgType.OFFER, yiaddr="255.255.255.255"),
        answer(disc, w.MsgType.OFFER, yiaddr="127.0.0.1"),
        answer(disc, w.MsgType.OFFER, yiaddr="224.0.0.1"),
        answer(disc, w.MsgType.OFFER, mask=bytes([255, 0, 255, 0])),  # non-contiguous
        answer(disc, w.MsgType.OFFER, mask=bytes([255, 0])),
        good[:241],  # truncated options
        good[:100],  # truncated header
        good[:240] + bytes([53, 200, 2]) + bytes(10),  # option overflow
        good + bytes(2000),  # oversized
        good.replace(b"\x35\x01\x02", b"\x35\x01\x63"),  # unknown message type
        w.encode(w.Message(op=w.BOOTREQUEST, xid=disc.xid, chaddr=MAC,
                           options=((53, b"\x02"),))),  # a request, not a reply
        b"",
    ]
    for pkt in hostile:
        # Nothing sent, nothing bound: at most a refusal to log.
        ev = recv(c, pkt, 0.5)
        assert all(isinstance(e, Refused) for e in ev), (pkt[:16], ev)
        assert c.state is State.SELECTING
    # Still works after the garbage.
    assert sent(recv(c, good, 0.6))[0].msg_type is w.MsgType.REQUEST
    # An ACK without a lease time, while requesting, is declined.
    (req,) = sent(c.timeout(c.deadline or 0))
    bad_ack = w.encode(w.Message(op=w.BOOTREPLY, xid=req.xid, chaddr=MAC, yiaddr="10.9.0.50",
                                 options=((53, b"\x05"), (54, bytes([10, 9, 0, 1])),
                                          (1, bytes([255, 255, 255, 0])))))
    ev = recv(c, bad_ack, 5.0)
    assert [m.msg_type for m in sent(ev)] == [w.MsgType.DECLINE]
    assert Refused("ACK of 10.9.0.50 from 10.9.0.1", "ACK without a lease time") in ev
    assert c.state is State.INIT and c.lease is None


async def drive_until(c: DhcpClient, end: float) -> list[tuple[float, w.Message]]:
    """Run the client against silence on trio's clock; record what it sends, when."""
    out: list[tuple[float, w.Message]] = []
    for m in sent(c.start(trio.current_time())):
        out.append((trio.current_time(), m))
    while trio.current_time() < end:
        await trio.sleep_until(min(c.deadline if c.deadline is not None else math.inf, end))
        for m in sent(c.timeout(trio.current_time())):
            out.append((trio.current_time(), m))
    return out


async def test_discover_backoff_on_mock_clock(autojump_clock: trio.testing.MockClock) -> None:
    t0 = trio.current_time()
    c = DhcpClient(MAC, random.Random(7), Timing(initial=4, max_backoff=64, jitter=1))
    times = [t - t0 for t, _ in await drive_until(c, t0 + 200)]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # RFC 2131 §4.1: 4, 8, 16, 32, 64, 64... each randomised by ±1 s.
    for gap, base in zip(gaps, [4, 8, 16, 32, 64, 64], strict=False):
        assert base - 1 <= gap <= base + 1
    assert len({round(g - b, 6) for g, b in zip(gaps, [4, 8, 16, 32], strict=False)}) > 1


async def test_default_cap_finds_a_late_server_quickly(
        autojump_clock: trio.testing.MockClock) -> None:
    t0 = trio.current_time()
    c = DhcpClient(MAC, random.Random(3))
    times = [t - t0 for t, _ in await drive_until(c, t0 + 120)]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps) <= Timing().max_backoff + Timing().jitter


async def test_secs_field_counts_from_start(autojump_clock: trio.testing.MockClock) -> None:
    t0 = trio.current_time()
    c = DhcpClient(MAC, random.Random(5))
    msgs = await drive_until(c, t0 + 30)
    assert msgs[0][1].secs == 0
    assert [m.secs for _, m in msgs] == [int(t - t0) for t, _ in msgs]
    assert len({m.xid for _, m in msgs}) == 1  # retransmissions keep the xid


# -- issue #19: every exchange its own xid; unusable replies ignored or declined ----------


def test_every_exchange_has_a_new_xid() -> None:
    """Finding: renewals reused the xid of the exchange that earned the lease."""
    c = client(renew_floor=5)
    (disc,) = sent(c.start(0.0))
    (req,) = sent(recv(c, answer(disc, w.MsgType.OFFER), 1.0))
    recv(c, answer(req, w.MsgType.ACK), 1.2)
    (renew,) = sent(c.timeout(51.0))
    assert renew.xid != disc.xid
    (again,) = sent(c.timeout(c.deadline or 0))  # a retransmission of the same renewal
    assert c.state is State.RENEWING and again.xid == renew.xid
    (rebind,) = sent(c.timeout(88.0))
    assert c.state is State.REBINDING and rebind.xid not in (disc.xid, renew.xid)
    # The old exchange's reply is not taken for the new one.
    assert recv(c, answer(renew, w.MsgType.ACK), 89.0) == [] and c.state is State.REBINDING
    ev = recv(c, answer(rebind, w.MsgType.ACK), 89.5)
    assert any(isinstance(e, Renewed) for e in ev)
    (second,) = sent(c.timeout(c.deadline or 0))
    assert second.xid not in (disc.xid, renew.xid, rebind.xid)


def test_unusable_offer_is_ignored_with_its_reason_and_a_later_good_one_taken() -> None:
    c = client()
    (disc,) = sent(c.start(0.0))
    ev = recv(c, answer(disc, w.MsgType.OFFER, yiaddr=SERVER), 0.5)
    assert ev == [Refused(f"OFFER of {SERVER} from {SERVER}",
                          f"address {SERVER} is the server's own address")]
    assert c.state is State.SELECTING
    ev = recv(c, answer(disc, w.MsgType.OFFER, mask=bytes(4)), 0.6)
    assert "wider than /8" in ev[0].reason  # type: ignore[attr-defined]
    (req,) = sent(recv(c, answer(disc, w.MsgType.OFFER), 0.7))
    assert req.msg_type is w.MsgType.REQUEST and req.addr(50) == "10.9.0.50"


def test_unusable_ack_is_declined_and_discovery_waits_with_backoff() -> None:
    """Finding: an off-subnet router reached the kernel, whose refusal was fatal."""
    c = client()
    now = 0.0
    waits = []
    for i in range(5):
        (disc,) = sent(c.timeout(now) if c.state is State.INIT else c.start(now))
        (req,) = sent(recv(c, answer(disc, w.MsgType.OFFER), now + 0.1))
        if i == 0:  # a router the kernel cannot reach
            bad = answer(req, w.MsgType.ACK, mask=bytes([255, 255, 255, 128]),
                         yiaddr="10.9.0.200")
            why, addr = "router 10.9.0.1 is outside 10.9.0.128/25", "10.9.0.200"
        else:
            bad = answer(req, w.MsgType.ACK, mask=bytes([255, 255, 0, 0]), yiaddr="10.9.255.255")
            why, addr = "broadcast address of 10.9.0.0/16", "10.9.255.255"
        ev = recv(c, bad, now + 0.2)
        (refusal,) = [e for e in ev if isinstance(e, Refused)]
        assert why in refusal.reason
        (decline,) = sent(ev)
        assert [e.destination for e in ev if isinstance(e, Transmit)] == [BROADCAST]
        assert decline.msg_type is w.MsgType.DECLINE and decline.xid == req.xid
        assert (decline.addr(50), decline.addr(54), decline.ciaddr) == (addr, SERVER, "0.0.0.0")
        assert c.state is State.INIT and c.lease is None
        assert c.timeout((c.deadline or 0) - 0.01) == []
        waits.append((c.deadline or 0) - (now + 0.2))
        now = c.deadline or 0
    # RFC 2131 §3.1: at least 10 s, then doubling while every lease is declined.
    assert waits == pytest.approx([10, 20, 40, 60, 60])
    (disc,) = sent(c.timeout(now))
    assert disc.msg_type is w.MsgType.DISCOVER and disc.xid != req.xid


def test_ack_from_another_server_than_offered_is_refused_not_declined() -> None:
    c = client()
    (disc,) = sent(c.start(0.0))
    (req,) = sent(recv(c, answer(disc, w.MsgType.OFFER), 0.1))
    ev = recv(c, answer(req, w.MsgType.ACK, server="10.9.0.66"), 0.2)
    assert ev == [Refused("ACK of 10.9.0.50 from 10.9.0.66", f"we asked {SERVER}")]
    assert c.state is State.REQUESTING


def test_probe_conflict_declines_and_clear_binds() -> None:
    for conflict in ("in use by 02:00:00:00:00:01 (ARP reply)", None):
        c = client()
        (disc,) = sent(c.start(0.0))
        (req,) = sent(recv(c, answer(disc, w.MsgType.OFFER), 0.1))
        assert c.receive(answer(req, w.MsgType.ACK), 0.2)[-1] == Probe("10.9.0.50")
        ev = c.probed(conflict, 0.9)
        if conflict is None:
            assert any(isinstance(e, Bound) for e in ev) and c.state is State.BOUND
            assert c.lease is not None and c.lease.start == 0.1
        else:
            (decline,) = sent(ev)
            assert decline.msg_type is w.MsgType.DECLINE and decline.addr(50) == "10.9.0.50"
            (change,) = [e for e in ev if isinstance(e, StateChanged)]
            assert change.new is State.INIT and conflict in change.reason
            assert c.deadline == pytest.approx(10.9)
        assert c.probed(None, 1.0) == []  # a late answer changes nothing


def test_the_node_declines_a_lease_the_kernel_refused() -> None:
    c = client()
    bind(c)
    ev = c.decline("netlink: route: Network is unreachable", 5.0)
    assert [type(e) for e in ev if not isinstance(e, StateChanged)] == [LeaseLost, Transmit]
    assert ev[0].reason.startswith("declined: netlink")  # type: ignore[union-attr]
    assert sent(ev)[0].msg_type is w.MsgType.DECLINE
    assert c.state is State.INIT and c.lease is None and c.deadline == 15.0
    assert c.decline("again", 6.0) == []  # nothing held, nothing to give back


def test_declines_in_a_row_reset_once_a_lease_reaches_t1() -> None:
    c = client()
    bind(c)
    c.decline("x", 5.0)
    (disc,) = sent(c.timeout(15.0))
    (req,) = sent(recv(c, answer(disc, w.MsgType.OFFER), 15.1))
    recv(c, answer(req, w.MsgType.ACK), 15.2)
    c.decline("y", 16.0)
    assert c.deadline == 36.0  # 20 s: the second in a row
    (disc,) = sent(c.timeout(36.0))
    (req,) = sent(recv(c, answer(disc, w.MsgType.OFFER), 36.1))
    recv(c, answer(req, w.MsgType.ACK), 36.2)
    c.timeout(c.deadline or 0)  # T1: this one has proven usable
    c.decline("z", 100.0)
    assert c.deadline == 110.0


def test_unusable_ack_while_renewing_loses_the_lease_and_declines() -> None:
    c = client()
    bind(c)
    (req,) = sent(c.timeout(51.0))
    ev = recv(c, answer(req, w.MsgType.ACK, extra=((15, b"x" * 64),)), 52.0)
    kinds = [type(e) for e in ev if not isinstance(e, StateChanged)]
    assert kinds == [Refused, LeaseLost, Transmit]
    assert "label of 64 bytes" in ev[0].reason  # type: ignore[union-attr]
    assert sent(ev)[0].msg_type is w.MsgType.DECLINE and c.lease is None


def test_malformed_reply_for_us_is_refused_others_are_silent() -> None:
    c = client()
    (disc,) = sent(c.start(0.0))
    good = answer(disc, w.MsgType.OFFER)
    (refusal,) = c.receive(good[:250], 0.1)
    assert isinstance(refusal, Refused) and "in options" in refusal.reason
    other = answer(disc, w.MsgType.OFFER, chaddr=b"\x02" * 6)
    assert c.receive(other[:250], 0.1) == []
    assert c.receive(answer(disc, w.MsgType.OFFER, xid=disc.xid + 1), 0.1) == []


def test_routes_and_search_list_reach_the_lease() -> None:
    c = client()
    opt121 = bytes([0, 10, 9, 0, 254, 16, 172, 20, 10, 9, 0, 1])
    search = b"\x03lab\x07example\x00"
    bind(c, extra=((121, opt121), (119, search), (15, b"site.example")))
    assert c.lease is not None
    assert c.lease.routers == ("10.9.0.254",)  # RFC 3442: option 121 over option 3
    assert c.lease.routes == (w.Route("172.20.0.0/16", "10.9.0.1"),)
    assert c.lease.search_domains == ("site.example", "lab.example")
    (disc,) = sent(client().start(0.0))
    assert disc.get(55) is not None and 121 in disc.get(55) and 119 in disc.get(55)  # type: ignore[operator]
