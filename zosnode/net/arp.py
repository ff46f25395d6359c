"""Address conflict detection (RFC 5227), sans-IO: is a leased address held already (a stale
lease, a static address, a rogue)? Probes carry sender IP 0.0.0.0: no neighbour cache learns.
RFC 5227 §1.1 times probes for busy Wi-Fi (up to 7 s); a wired segment answers in milliseconds
and a node without a network is useless, so each interval is a tenth (0.4 to 0.7 s in all)."""

import ipaddress
import random
import struct
from dataclasses import astuple, dataclass

from zosnode.net.errors import NetUsageError

ETH_P_ARP = 0x0806
ARP = struct.Struct("!HHBBH6s4s6s4s")  # Ethernet/IPv4 ARP, 28 bytes
REQUEST, REPLY = 1, 2
ZERO_IP = bytes(4)

PROBE_WAIT = 0.1  # RFC 5227 §1.1's values, the times divided by 10
PROBE_NUM = 3
PROBE_MIN = 0.1
PROBE_MAX = 0.2
ANNOUNCE_WAIT = 0.2


@dataclass(frozen=True)
class Clear:
    probes: int


@dataclass(frozen=True)
class Conflict:
    mac: bytes
    how: str  # "ARP reply", "ARP request", "another host probing for it"

    def describe(self) -> str:
        return f"in use by {self.mac.hex(':')} ({self.how})"


Verdict = Clear | Conflict


@dataclass(frozen=True)
class Packet:
    op: int
    sender_mac: bytes
    sender_ip: bytes
    target_mac: bytes
    target_ip: bytes


def encode(p: Packet) -> bytes:
    return ARP.pack(1, 0x0800, 6, 4, *astuple(p))


def decode(data: bytes) -> Packet | None:
    """An Ethernet/IPv4 ARP packet, or None; trailing Ethernet padding is allowed."""
    if len(data) < ARP.size:
        return None
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = ARP.unpack_from(data)
    if (htype, ptype, hlen, plen) != (1, 0x0800, 6, 4) or op not in (REQUEST, REPLY):
        return None
    return Packet(op, sha, spa, tha, tpa)


class ArpProbe:
    """Events in: `timeout(now)`, `receive(frame, now)`. Out: frames to send, `verdict`."""

    def __init__(self, mac: bytes, address: str, rng: random.Random, now: float) -> None:
        if len(mac) != 6:
            raise NetUsageError("arp probe: a MAC address is 6 bytes")
        self.mac = mac
        self._ip = ipaddress.IPv4Address(address).packed
        self.rng = rng
        self.sent = 0
        self.verdict: Verdict | None = None
        self.deadline: float | None = now + rng.uniform(0, PROBE_WAIT)

    def timeout(self, now: float) -> list[bytes]:
        if self.verdict is not None or self.deadline is None or now < self.deadline:
            return []
        if self.sent < PROBE_NUM:
            self.sent += 1
            last = self.sent == PROBE_NUM
            gap = ANNOUNCE_WAIT if last else self.rng.uniform(PROBE_MIN, PROBE_MAX)
            self.deadline = now + gap
            return [encode(Packet(REQUEST, self.mac, ZERO_IP, bytes(6), self._ip))]
        self.verdict = Clear(self.sent)
        self.deadline = None
        return []

    def receive(self, frame: bytes, now: float) -> None:
        """RFC 5227 §2.1.1: a sender IP equal to ours, or someone else's probe for it."""
        if self.verdict is not None:
            return
        p = decode(frame)
        if p is None or p.sender_mac == self.mac:
            return  # not ARP, or our own probe looped back
        if p.sender_ip == self._ip:
            self._conflict(p.sender_mac, "ARP reply" if p.op == REPLY else "ARP request")
        elif p.op == REQUEST and p.sender_ip == ZERO_IP and p.target_ip == self._ip:
            self._conflict(p.sender_mac, "another host probing for it")

    def _conflict(self, mac: bytes, how: str) -> None:
        self.verdict = Conflict(mac, how)
        self.deadline = None
