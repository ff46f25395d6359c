"""The trio shell around `DhcpClient`, per NIC: carrier polling, ARP probes, refusal lines
under a rate limit, and a UDP socket on port 68 bound to the NIC (SO_BINDTODEVICE), which gets
broadcast replies before the NIC has an address and unicast ones to renewals after."""

import errno
import math
import random
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from zosnode.net import arp
from zosnode.net.dhcp_client import DhcpClient, Event, Probe, Refused, Transmit
from zosnode.net.errors import NetSystemError
from zosnode.net.links import Links, Nic
from zosnode.net.loglimit import LineLimit

SERVER_PORT, CLIENT_PORT = 67, 68
MAX_DATAGRAM = 2048  # larger datagrams are truncated, then refused by the codec
PACKET_OUTGOING = 4  # sll_pkttype of a frame we sent ourselves
# A link that just went away: the carrier poll will notice.
LINK_GONE = (errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTUNREACH, errno.ENXIO, errno.ENODEV,
             errno.EADDRNOTAVAIL)

OnEvent = Callable[[Nic, Event], Awaitable[None]]
Say = Callable[[str], None]


@dataclass
class NicControl:
    """How the rest of the node talks to one NIC's DHCP task: give the lease back."""

    limit: LineLimit = field(default_factory=LineLimit)
    _declines: list[str] = field(default_factory=list)
    _wake: trio.CancelScope | None = None

    def decline(self, reason: str) -> None:  # see DhcpClient.decline
        self._declines.append(reason)
        if self._wake is not None:
            self._wake.cancel()


def _carrier(links: Links, nic: Nic, say: Say) -> bool:
    try:
        return links.carrier(nic)
    except NetSystemError as exc:
        say(f"{nic.name}: {exc}; treating as no carrier")
        return False


async def run_nic(nic: Nic, client: DhcpClient, links: Links, on_event: OnEvent, say: Say,
                  carrier_poll: float, carrier_timeout: float, ctl: NicControl,
                  *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for opt, value in ((socket.SO_REUSEADDR, 1), (socket.SO_BROADCAST, 1),
                           (socket.SO_BINDTODEVICE, nic.name.encode())):
            sock.setsockopt(socket.SOL_SOCKET, opt, value)
        await sock.bind(("0.0.0.0", CLIENT_PORT))
        task_status.started()

        async def act(events: list[Event]) -> None:
            for ev in events:
                if isinstance(ev, Transmit):
                    try:
                        await sock.sendto(ev.data, (ev.destination, SERVER_PORT))
                    except OSError as exc:
                        if exc.errno not in LINK_GONE:
                            raise
                elif isinstance(ev, Probe):
                    conflict = await arp_probe(nic, ev.address, client.rng, say)
                    await act(client.probed(conflict, trio.current_time()))
                else:
                    if isinstance(ev, Refused):
                        verdict = ctl.limit.admit(trio.current_time())
                        summary(verdict.suppressed)
                        if verdict.show:
                            say(f"{nic.name}: dhcp {ev.describe()}")
                    await on_event(nic, ev)  # the last refusal goes into the heartbeat

        def summary(suppressed: int) -> None:
            if suppressed:
                say(f"{nic.name}: dhcp: {suppressed} more refusals suppressed (at most "
                    f"{ctl.limit.burst} lines per {ctl.limit.interval:g}s)")

        up = False  # the first poll, at once, starts the client if the carrier is up
        if not _carrier(links, nic, say):
            say(f"{nic.name}: waiting for carrier (up to {carrier_timeout:g}s)")
        give_up: float | None = trio.current_time() + carrier_timeout
        next_poll = trio.current_time()
        while True:
            if ctl._declines:
                await act(client.decline(ctl._declines.pop(0), trio.current_time()))
                continue
            data = None
            deadline = math.inf if client.deadline is None else client.deadline
            with trio.move_on_at(min(deadline, next_poll)) as ctl._wake:
                data = await sock.recv(MAX_DATAGRAM)
            ctl._wake = None
            if data is not None:
                # Outside the receive deadline: a carrier poll must not cancel a slow hub probe.
                await act(client.receive(data, trio.current_time()))
                continue
            now = trio.current_time()
            await act(client.timeout(now))
            summary(ctl.limit.flush(now))
            if now >= next_poll:
                next_poll = now + carrier_poll
                was, up = up, _carrier(links, nic, say)
                if was and not up:
                    say(f"{nic.name}: carrier lost")
                    await act(client.link_down(now))
                elif up and not was:
                    say(f"{nic.name}: carrier up")
                    give_up = None
                    await act(client.start(now))
                elif not up and give_up is not None and now >= give_up:
                    say(f"{nic.name}: no carrier after {carrier_timeout:g}s; still watching")
                    give_up = None


async def arp_probe(nic: Nic, address: str, rng: random.Random, say: Say) -> str | None:
    """RFC 5227 probes on an AF_PACKET socket: a conflict's description, or None."""
    probe = arp.ArpProbe(nic.mac, address, rng, trio.current_time())
    try:
        with trio.socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM,
                                socket.htons(arp.ETH_P_ARP)) as sock:
            await sock.bind((nic.name, arp.ETH_P_ARP))
            while probe.verdict is None:
                for frame in probe.timeout(trio.current_time()):
                    await sock.sendto(frame, (nic.name, arp.ETH_P_ARP, 0, 0, b"\xff" * 6))
                if probe.verdict is not None or probe.deadline is None:
                    break
                with trio.move_on_at(probe.deadline):
                    while probe.verdict is None:
                        frame, where = await sock.recvfrom(128)
                        if where[2] != PACKET_OUTGOING:
                            probe.receive(frame, trio.current_time())
    except OSError as exc:
        # No packet socket (no CAP_NET_RAW), or the link went away (the carrier poll notices).
        say(f"{nic.name}: ARP probe of {address} failed ({exc.strerror}); using it unprobed")
        return None
    return probe.verdict.describe() if isinstance(probe.verdict, arp.Conflict) else None
