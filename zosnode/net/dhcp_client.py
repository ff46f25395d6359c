"""DHCPv4 client state machine (RFC 2131 §4.4), sans-IO.

Events in: `start`, `receive(bytes)`, `timeout`, `link_down`, `link_up`, each
with `now` (seconds on any monotonic clock). Events out: `Transmit` (bytes to
send to a destination), `Bound`, `Renewed`, `LeaseLost`, `StateChanged`. The
caller sleeps until `deadline` or the next packet, whichever comes first.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from enum import Enum

from zosnode.net import dhcp_wire as wire
from zosnode.net.dhcp_wire import Message, MsgType, Opt
from zosnode.net.errors import NetUsageError, PacketError

BROADCAST = "255.255.255.255"
INFINITE = 0xFFFFFFFF
PARAMS = bytes((Opt.SUBNET_MASK, Opt.ROUTER, Opt.DNS, Opt.DOMAIN_NAME, Opt.BROADCAST,
                Opt.LEASE_TIME, Opt.RENEWAL_T1, Opt.REBINDING_T2))


class State(Enum):
    STOPPED = "stopped"
    INIT = "init"
    SELECTING = "selecting"
    REQUESTING = "requesting"
    INIT_REBOOT = "init-reboot"
    REBOOTING = "rebooting"
    BOUND = "bound"
    RENEWING = "renewing"
    REBINDING = "rebinding"


@dataclass(frozen=True)
class Timing:
    """Retransmission policy. RFC 2131 §4.1: 4 s doubling to 64 s, ±1 s random.

    A node with no network is useless, so the discovery cap defaults lower
    than 64 s: a server that comes back is found within `max_backoff` + 1 s.
    """

    initial: float = 4.0
    max_backoff: float = 8.0
    jitter: float = 1.0
    request_tries: int = 4  # REQUEST / INIT-REBOOT attempts before INIT
    renew_floor: float = 60.0  # RFC §4.4.5: retry no more often than this...
    min_lease: int = 10  # a hostile 0 s lease must not make us spin
    nak_delay: float = 2.0  # ... nor a stream of NAKs

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.max_backoff and 0 <= self.jitter < self.initial):
            raise NetUsageError("dhcp timing: need 0 <= jitter < initial <= max_backoff")
        if self.request_tries < 1 or self.renew_floor <= 0 or self.min_lease < 1:
            raise NetUsageError("dhcp timing: tries, floor and minimum lease must be positive")


@dataclass(frozen=True)
class Lease:
    address: str
    prefixlen: int
    server: str
    routers: tuple[str, ...]
    dns: tuple[str, ...]
    domain: str | None
    lease_s: int  # INFINITE for a permanent lease
    t1_s: int
    t2_s: int
    start: float  # when the REQUEST that earned it was sent (RFC §4.4.1)

    def __post_init__(self) -> None:
        ipaddress.IPv4Address(self.address)
        if not 0 <= self.prefixlen <= 32:
            raise NetUsageError(f"lease: bad prefix length {self.prefixlen}")
        if not 0 < self.t1_s <= self.t2_s <= self.lease_s:
            raise NetUsageError("lease: need 0 < T1 <= T2 <= lease time")

    @property
    def infinite(self) -> bool:
        return self.lease_s == INFINITE

    @property
    def renew_at(self) -> float:
        return self.start + self.t1_s

    @property
    def rebind_at(self) -> float:
        return self.start + self.t2_s

    @property
    def expires_at(self) -> float:
        return self.start + self.lease_s

    def describe(self) -> str:
        gw = self.routers[0] if self.routers else "none"
        life = "infinite" if self.infinite else f"{self.lease_s}s"
        return f"{self.address}/{self.prefixlen} gateway {gw} server {self.server} lease {life}"


@dataclass(frozen=True)
class Transmit:
    data: bytes
    destination: str  # BROADCAST or the server's unicast address


@dataclass(frozen=True)
class Bound:
    lease: Lease


@dataclass(frozen=True)
class Renewed:
    lease: Lease


@dataclass(frozen=True)
class LeaseLost:
    lease: Lease
    reason: str


@dataclass(frozen=True)
class StateChanged:
    old: State
    new: State
    reason: str


Event = Transmit | Bound | Renewed | LeaseLost | StateChanged


class DhcpClient:
    def __init__(self, mac: bytes, rng: random.Random, timing: Timing | None = None,
                 hostname: str | None = None) -> None:
        if len(mac) != 6:
            raise NetUsageError("dhcp: a MAC address is 6 bytes")
        self.mac = mac
        self.rng = rng
        self.timing = timing or Timing()
        self.hostname = hostname
        self.state = State.STOPPED
        self.lease: Lease | None = None
        self.deadline: float | None = None
        self._xid = 0
        self._tries = 0
        self._began = 0.0  # start of this acquisition, for `secs`
        self._sent_at = 0.0
        self._offer: Message | None = None
        self._remembered: str | None = None  # address to ask for in INIT-REBOOT

    # -- events in ----------------------------------------------------------

    def start(self, now: float, previous: str | None = None) -> list[Event]:
        """Begin: INIT-REBOOT if we know an address we held, else discovery."""
        if self.state is not State.STOPPED:
            raise NetUsageError(f"dhcp: start while {self.state.value}")
        if previous is not None:
            self._remembered = str(ipaddress.IPv4Address(previous))
        if self._remembered is not None:
            return self._init_reboot(now, "started with a previous address")
        return self._discover(now, "started")

    def link_down(self, now: float) -> list[Event]:
        if self.state is State.STOPPED:
            return []
        out: list[Event] = []
        if self.lease is not None:
            self._remembered = self.lease.address
            out.append(LeaseLost(self.lease, "link down"))
            self.lease = None
        out += self._to(State.STOPPED, "link down")
        self.deadline = None
        return out

    def link_up(self, now: float) -> list[Event]:
        if self.state is not State.STOPPED:
            return []
        if self._remembered is not None:
            return self._init_reboot(now, "link up")
        return self._discover(now, "link up")

    def timeout(self, now: float) -> list[Event]:
        if self.deadline is None or now < self.deadline:
            return []
        s = self.state
        if s in (State.INIT, State.SELECTING):
            return self._discover(now, "no offer", retry=s is State.SELECTING)
        if s in (State.REQUESTING, State.REBOOTING):
            if self._tries >= self.timing.request_tries:
                self._remembered = None
                return self._discover(now, "no answer to REQUEST")
            return self._send_request(now)
        if s is State.BOUND:
            assert self.lease is not None
            out = self._to(State.RENEWING, "T1 reached")
            self._tries = 0
            return out + self._send_request(now)
        if s is State.RENEWING:
            assert self.lease is not None
            if now >= self.lease.rebind_at:
                out = self._to(State.REBINDING, "T2 reached")
                self._tries = 0
                return out + self._send_request(now)
            return self._send_request(now)
        if s is State.REBINDING:
            assert self.lease is not None
            if now >= self.lease.expires_at:
                lost = self.lease
                self.lease = None
                self._remembered = None
                return [LeaseLost(lost, "lease expired")] + self._discover(now, "lease expired")
            return self._send_request(now)
        return []

    def receive(self, data: bytes, now: float) -> list[Event]:
        """A datagram arrived on port 68. Anything not for us is dropped."""
        try:
            msg = wire.decode(data)
        except PacketError:
            return []
        if (msg.op != wire.BOOTREPLY or msg.xid != self._xid or msg.chaddr != self.mac):
            return []
        kind = msg.msg_type
        if kind is MsgType.OFFER and self.state is State.SELECTING:
            return self._on_offer(msg, now)
        waiting = (State.REQUESTING, State.REBOOTING, State.RENEWING, State.REBINDING)
        if kind is MsgType.ACK and self.state in waiting:
            return self._on_ack(msg, now)
        if kind is MsgType.NAK and self.state in waiting:
            return self._on_nak(msg, now)
        return []

    # -- transitions ----------------------------------------------------------

    def _to(self, new: State, reason: str) -> list[Event]:
        old, self.state = self.state, new
        return [StateChanged(old, new, reason)] if old is not new else []

    def _backoff(self) -> float:
        doublings = min(max(self._tries - 1, 0), 16)
        base = min(self.timing.initial * float(1 << doublings), self.timing.max_backoff)
        return base + self.rng.uniform(-self.timing.jitter, self.timing.jitter)

    def _new_xid(self, now: float) -> None:
        self._xid = self.rng.getrandbits(32)
        self._tries = 0
        self._began = now

    def _discover(self, now: float, reason: str, retry: bool = False) -> list[Event]:
        out: list[Event] = []
        if not retry:
            self._new_xid(now)
            self._offer = None
            out += self._to(State.INIT, reason)
            out += self._to(State.SELECTING, "sending DISCOVER")
        opts: list[tuple[int, bytes]] = [(Opt.MESSAGE_TYPE, bytes((MsgType.DISCOVER,)))]
        out.append(self._transmit(opts, now, BROADCAST))
        return out

    def _init_reboot(self, now: float, reason: str) -> list[Event]:
        self._new_xid(now)
        out = self._to(State.INIT_REBOOT, reason)
        out += self._to(State.REBOOTING, f"asking again for {self._remembered}")
        return out + self._send_request(now)

    def _send_request(self, now: float) -> list[Event]:
        s = self.state
        opts: list[tuple[int, bytes]] = [(Opt.MESSAGE_TYPE, bytes((MsgType.REQUEST,)))]
        ciaddr = "0.0.0.0"
        dest = BROADCAST
        if s is State.REQUESTING:
            assert self._offer is not None
            server = self._offer.addr(Opt.SERVER_ID)
            assert server is not None
            opts += [(Opt.REQUESTED_IP, ipaddress.IPv4Address(self._offer.yiaddr).packed),
                     (Opt.SERVER_ID, ipaddress.IPv4Address(server).packed)]
        elif s is State.REBOOTING:
            assert self._remembered is not None
            opts.append((Opt.REQUESTED_IP, ipaddress.IPv4Address(self._remembered).packed))
        else:  # RENEWING unicasts to the server, REBINDING broadcasts (§4.4.5)
            assert self.lease is not None
            ciaddr = self.lease.address
            if s is State.RENEWING:
                dest = self.lease.server
        out: list[Event] = [self._transmit(opts, now, dest, ciaddr)]
        if s in (State.RENEWING, State.REBINDING):
            assert self.lease is not None
            # §4.4.5: wait half the time remaining, but not less than a floor,
            # and never past the next boundary (T2 or expiry).
            edge = self.lease.rebind_at if s is State.RENEWING else self.lease.expires_at
            wait = max((edge - now) / 2, self.timing.renew_floor)
            self.deadline = min(now + wait, edge)
        return out

    def _transmit(self, opts: list[tuple[int, bytes]], now: float, dest: str,
                  ciaddr: str = "0.0.0.0") -> Transmit:
        self._tries += 1
        if self._tries == 1 or self.state in (State.RENEWING, State.REBINDING):
            self._sent_at = now
        opts = opts + [(Opt.CLIENT_ID, b"\x01" + self.mac), (Opt.PARAM_LIST, PARAMS),
                       (Opt.MAX_SIZE, (1500).to_bytes(2, "big"))]
        if self.hostname:
            opts.append((Opt.HOST_NAME, self.hostname.encode()[:63]))
        secs = min(int(now - self._began), 0xFFFF)
        # Without an address we cannot receive unicast: ask for broadcast replies.
        flags = 0 if ciaddr != "0.0.0.0" else wire.FLAG_BROADCAST
        msg = Message(op=wire.BOOTREQUEST, xid=self._xid, chaddr=self.mac, options=tuple(opts),
                      secs=max(secs, 0), flags=flags, ciaddr=ciaddr)
        if self.state not in (State.RENEWING, State.REBINDING):
            self.deadline = now + self._backoff()
        return Transmit(wire.encode(msg), dest)

    def _on_offer(self, msg: Message, now: float) -> list[Event]:
        if _usable(msg) is None:
            return []
        self._offer = msg
        self._tries = 0
        out = self._to(State.REQUESTING, f"offer of {msg.yiaddr} from {msg.addr(Opt.SERVER_ID)}")
        return out + self._send_request(now)

    def _on_ack(self, msg: Message, now: float) -> list[Event]:
        prefix = _usable(msg)
        if prefix is None:
            return []
        if self.state is State.REQUESTING:
            assert self._offer is not None
            if msg.addr(Opt.SERVER_ID) != self._offer.addr(Opt.SERVER_ID):
                return []
        renewing = self.state in (State.RENEWING, State.REBINDING)
        if renewing:
            assert self.lease is not None
            if msg.yiaddr != self.lease.address:
                # A server that moves us is treated as loss of the old lease.
                lost, self.lease = self.lease, None
                return [LeaseLost(lost, "server changed our address")] + self._bind(
                    msg, prefix, now, fresh=True)
        return self._bind(msg, prefix, now)

    def _bind(self, msg: Message, prefix: int, now: float, fresh: bool = False) -> list[Event]:
        t = self.timing
        raw = msg.u32(Opt.LEASE_TIME)
        assert raw is not None  # checked by _usable
        lease_s = raw if raw == INFINITE else max(raw, t.min_lease)
        t1 = msg.u32(Opt.RENEWAL_T1)
        t2 = msg.u32(Opt.REBINDING_T2)
        if lease_s == INFINITE:
            t1 = t2 = INFINITE
        elif not (t1 and t2 and 0 < t1 <= t2 <= lease_s):
            t1, t2 = lease_s // 2 or 1, max(lease_s * 7 // 8, lease_s // 2 or 1)
        server = msg.addr(Opt.SERVER_ID)
        assert server is not None
        domain = msg.get(Opt.DOMAIN_NAME)
        lease = Lease(
            address=msg.yiaddr, prefixlen=prefix, server=server, routers=msg.addrs(Opt.ROUTER),
            dns=msg.addrs(Opt.DNS),
            domain=domain.decode("ascii", "replace").strip("\x00") if domain else None,
            lease_s=lease_s, t1_s=t1, t2_s=t2, start=self._sent_at,
        )
        was = self.state
        self.lease = lease
        self._remembered = lease.address
        out = self._to(State.BOUND, f"ACK from {server}")
        self.deadline = None if lease.infinite else lease.renew_at
        if self.deadline is not None and self.deadline <= now:
            self.deadline = now  # a reply so late that T1 already passed
        renewed = was in (State.RENEWING, State.REBINDING) and not fresh
        out.append(Renewed(lease) if renewed else Bound(lease))
        return out

    def _on_nak(self, msg: Message, now: float) -> list[Event]:
        expected = None
        if self.state is State.REQUESTING and self._offer is not None:
            expected = self._offer.addr(Opt.SERVER_ID)
        elif self.lease is not None:
            expected = self.lease.server
        if expected is not None and msg.addr(Opt.SERVER_ID) not in (None, expected):
            return []
        out: list[Event] = []
        if self.lease is not None:
            out.append(LeaseLost(self.lease, "NAK"))
            self.lease = None
        self._remembered = None
        self._new_xid(now)
        out += self._to(State.INIT, "NAK")
        # §3.1: restart discovery, after a pause so a NAK storm cannot make us spin.
        self.deadline = now + self.timing.nak_delay
        return out


def _usable(msg: Message) -> int | None:
    """The prefix length if an OFFER/ACK carries what we need, else None."""
    try:
        addr = ipaddress.IPv4Address(msg.yiaddr)
    except ValueError:
        return None
    if (addr.is_unspecified or addr.is_multicast or addr.is_loopback
            or addr == ipaddress.IPv4Address(BROADCAST)):
        return None
    if msg.addr(Opt.SERVER_ID) is None:
        return None
    if msg.msg_type is MsgType.ACK and msg.u32(Opt.LEASE_TIME) is None:
        return None
    mask = msg.addr(Opt.SUBNET_MASK)
    if mask is None:
        return None
    try:
        prefix = ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen
    except ValueError:
        return None  # a non-contiguous mask
    return prefix
