"""The node's netlink sockets (rtnetlink, nftables): requests and the kernel's answers. The
kernel answers at once, so calls run inline; a socket timeout bounds every wait anyway."""

import os
import socket
from collections.abc import Callable
from typing import TypeVar

from zosnode.net import nlwire
from zosnode.net.errors import NetSystemError, PacketError

ROUTE, NETFILTER = 0, 12
TIMEOUT_S = 5.0
Request = tuple[int, int, bytes]  # type, flags, payload
T = TypeVar("T")


class KernelRefused(NetSystemError):
    def __init__(self, what: str, errno: int) -> None:
        super().__init__(f"{what}: {os.strerror(errno)}")
        self.errno = errno


class Socket:
    def __init__(self, protocol: int) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                   protocol)
        self._sock.settimeout(TIMEOUT_S)
        self._sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def exchange(self, what: str, requests: list[Request],
                 decode: Callable[[nlwire.NetlinkMessage], T]) -> list[T]:
        """Sent in one datagram (an nftables batch is one transaction); returns the answers'
        objects, decoded, once every request asking for an ack or a dump has its ack or end.
        A malformed answer (PacketError from `decode` too) is a NetSystemError."""
        first, wire, pending = self._seq + 1, b"", set()
        for kind, flags, payload in requests:
            self._seq += 1
            wire += nlwire.message(kind, flags, self._seq, payload)
            if flags & (nlwire.ACK | nlwire.DUMP):
                pending.add(self._seq)
        out = []
        try:
            self._sock.send(wire)
            while pending:
                for msg in nlwire.parse(self._sock.recv(1 << 16)):
                    if not first <= msg.seq <= self._seq:
                        continue  # a late answer to an earlier, failed exchange
                    if msg.kind == nlwire.NLMSG_ERROR and nlwire.error_of(msg):
                        raise KernelRefused(what, nlwire.error_of(msg))
                    if msg.kind in (nlwire.NLMSG_ERROR, nlwire.NLMSG_DONE):
                        pending.discard(msg.seq)
                    else:
                        out.append(decode(msg))
        except (OSError, PacketError) as exc:  # PacketError: the kernel's answer is garbled
            raise NetSystemError(f"{what}: {getattr(exc, 'strerror', None) or exc}") from None
        return out
