"""The trio shell around `DhcpClient`: one UDP socket per NIC, carrier polling.

A socket bound to port 68 with SO_BINDTODEVICE receives the broadcast
replies we ask for while the NIC has no address, and the unicast replies to
renewals once it has one; one socket per NIC lets every NIC run at once.
"""

from __future__ import annotations

import errno
import math
import socket
from collections.abc import Awaitable, Callable

import trio

from zosnode.net.dhcp_client import DhcpClient, Event, State, Transmit
from zosnode.net.links import Links, Nic

SERVER_PORT, CLIENT_PORT = 67, 68
MAX_DATAGRAM = 2048  # larger datagrams are truncated, then refused by the codec

OnEvent = Callable[[Nic, Event], Awaitable[None]]


def open_socket(nic: Nic) -> trio.socket.SocketType:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, nic.name.encode())
    except BaseException:
        sock.close()
        raise
    return sock


async def run_nic(nic: Nic, client: DhcpClient, links: Links, on_event: OnEvent,
                  say: Callable[[str], None], carrier_poll: float = 0.25,
                  carrier_timeout: float = 10.0,
                  *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Run DHCP on one NIC forever: follows carrier, feeds the client, acts on events."""
    with open_socket(nic) as sock:
        await sock.bind(("0.0.0.0", CLIENT_PORT))
        task_status.started()
        up = links.carrier(nic)
        if not up:
            say(f"{nic.name}: waiting for carrier (up to {carrier_timeout:g}s)")
            with trio.move_on_after(carrier_timeout):
                while not up:
                    await trio.sleep(carrier_poll)
                    up = links.carrier(nic)
            say(f"{nic.name}: carrier up" if up else
                f"{nic.name}: no carrier after {carrier_timeout:g}s; still watching")
        else:
            say(f"{nic.name}: carrier up")
        while not up:
            await trio.sleep(carrier_poll)
            up = links.carrier(nic)
            if up:
                say(f"{nic.name}: carrier up")
        await _act(nic, sock, client.start(trio.current_time()), on_event)
        next_poll = trio.current_time() + carrier_poll
        while True:
            deadline = min(client.deadline if client.deadline is not None else math.inf,
                           next_poll)
            data = None
            with trio.move_on_at(deadline):
                data = await sock.recv(MAX_DATAGRAM)
            if data is not None:
                # Acting happens outside the receive deadline: a slow handler (the
                # hub probe) must not be cancelled by the next carrier poll.
                await _act(nic, sock, client.receive(data, trio.current_time()), on_event)
                continue
            now = trio.current_time()
            await _act(nic, sock, client.timeout(now), on_event)
            if now >= next_poll:
                next_poll = now + carrier_poll
                was, up = up, links.carrier(nic)
                if was and not up:
                    say(f"{nic.name}: carrier lost")
                    await _act(nic, sock, client.link_down(now), on_event)
                elif up and not was:
                    say(f"{nic.name}: carrier up")
                    await _act(nic, sock, client.link_up(now), on_event)


async def _act(nic: Nic, sock: trio.socket.SocketType, events: list[Event],
               on_event: OnEvent) -> None:
    for ev in events:
        if isinstance(ev, Transmit):
            try:
                await sock.sendto(ev.data, (ev.destination, SERVER_PORT))
            except OSError as exc:
                # A link that just went away: the carrier poll will notice.
                if exc.errno not in (errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTUNREACH,
                                     errno.ENXIO, errno.ENODEV, errno.EADDRNOTAVAIL):
                    raise
        else:
            await on_event(nic, ev)


__all__ = ["run_nic", "open_socket", "State"]
