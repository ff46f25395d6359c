"""DHCPv4 client state machine (RFC 2131 §4.4), sans-IO. Replies are judged by `lease_check`:
an unusable OFFER is ignored; an unusable ACK, or one whose address another host answers for
(RFC 2131 §3.1 step 5), is declined."""

import ipaddress
import random
from dataclasses import dataclass, field
from enum import Enum

from zosnode.net import dhcp_wire as wire
from zosnode.net import lease_check
from zosnode.net.dhcp_wire import Message, MsgType, Opt
from zosnode.net.errors import NetUsageError, PacketError
from zosnode.net.lease_check import Terms

BROADCAST = "255.255.255.255"
INFINITE = 0xFFFFFFFF
PARAMS = bytes((Opt.SUBNET_MASK, Opt.CLASSLESS_ROUTE, Opt.ROUTER, Opt.DNS, Opt.DOMAIN_NAME,
                Opt.BROADCAST, Opt.LEASE_TIME, Opt.RENEWAL_T1, Opt.REBINDING_T2,
                Opt.DOMAIN_SEARCH))


class State(Enum):
    STOPPED = "stopped"
    INIT = "init"
    SELECTING = "selecting"
    REQUESTING = "requesting"
    CHECKING = "checking"  # ACK in hand, ARP probe under way (RFC 2131 §4.4.1)
    INIT_REBOOT = "init-reboot"
    REBOOTING = "rebooting"
    BOUND = "bound"
    RENEWING = "renewing"
    REBINDING = "rebinding"


_AWAITING_ACK = frozenset({State.REQUESTING, State.REBOOTING, State.RENEWING, State.REBINDING})


@dataclass(frozen=True)
class Timing:
    """RFC 2131 §4.1: 4 s doubling to 64 s, ±1 s random; but a node with no
    network is useless, so discovery is capped lower (found within cap + 1 s)."""

    initial: float = 4.0
    max_backoff: float = 8.0
    jitter: float = 1.0
    request_tries: int = 4  # REQUEST / INIT-REBOOT attempts before INIT
    renew_floor: float = 60.0  # RFC §4.4.5: retry no more often than this...
    min_lease: int = 10  # a hostile 0 s lease must not make us spin
    nak_delay: float = 2.0  # ... nor a stream of NAKs
    decline_wait: float = 10.0  # RFC 2131 §3.1: at least 10 s after a DECLINE...
    decline_max: float = 60.0  # ... doubling while every lease is declined

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.max_backoff and 0 <= self.jitter < self.initial
                and min(self.request_tries, self.renew_floor, self.min_lease) > 0
                and 0 < self.decline_wait <= self.decline_max):
            raise NetUsageError(f"dhcp timing: need 0 <= jitter < initial <= max_backoff, "
                                f"0 < decline_wait <= decline_max, the rest positive: {self}")


@dataclass(frozen=True)
class Lease(Terms):
    lease_s: int  # INFINITE for a permanent lease
    t1_s: int
    t2_s: int
    start: float = field(kw_only=True)  # when the REQUEST that earned it went out (§4.4.1)

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
        routes = f" routes {len(self.routes)}" if self.routes else ""
        return (f"{self.address}/{self.prefixlen} gateway {gw}{routes} server {self.server} "
                f"lease {life}")

    @property
    def search_domains(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(((self.domain,) if self.domain else ()) + self.search))

    def same_terms(self, other: "Lease") -> bool:
        keys = ("address", "prefixlen", "routers", "routes", "dns", "domain", "search")
        return all(getattr(self, k) == getattr(other, k) for k in keys)


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
class Probe:
    address: str  # check with ARP that nobody holds it, then call `DhcpClient.probed`


@dataclass(frozen=True)
class Refused:
    what: str  # a reply meant for us that we did not use: "OFFER of 10.0.0.5 from 10.0.0.1"
    reason: str

    def describe(self) -> str:
        return f"refused {self.what}: {self.reason}"


@dataclass(frozen=True)
class StateChanged:
    old: State
    new: State
    reason: str


Event = Transmit | Probe | Bound | Renewed | LeaseLost | Refused | StateChanged


class DhcpClient:
    def __init__(self, mac: bytes, rng: random.Random, timing: Timing | None = None) -> None:
        if len(mac) != 6:
            raise NetUsageError("dhcp: a MAC address is 6 bytes")
        self.mac = mac
        self.rng = rng
        self.timing = timing or Timing()
        self.state = State.STOPPED
        self.lease: Lease | None = None
        self.deadline: float | None = None
        self._xid = 0
        self._tries = 0
        self._began = 0.0  # start of this exchange, for `secs`
        self._sent_at = 0.0
        self._terms: Terms | None = None  # the OFFER being requested, or the ACK being probed
        self._declines = 0  # in a row, for the backoff
        self._remembered: str | None = None  # address to ask for in INIT-REBOOT

    def start(self, now: float) -> list[Event]:
        """Begin, or begin again once the link is back (INIT-REBOOT for the address held)."""
        if self.state is not State.STOPPED:
            raise NetUsageError(f"dhcp: start while {self.state.value}")
        if self._remembered is None:
            return self._discover(now, "started")
        out = self._to(State.INIT_REBOOT, "started with a previous address")
        return out + self._exchange(State.REBOOTING, f"asking again for {self._remembered}", now)

    def link_down(self, now: float) -> list[Event]:
        if self.state is State.STOPPED:
            return []
        out = self._lose("link down")  # `_remembered` keeps its address for INIT-REBOOT
        self._terms = self.deadline = None
        return out + self._to(State.STOPPED, "link down")

    def timeout(self, now: float) -> list[Event]:
        if self.deadline is None or now < self.deadline:
            return []
        s, lease = self.state, self.lease
        if s in (State.INIT, State.SELECTING):
            return self._discover(now, "no offer", retry=s is State.SELECTING)
        if s in (State.REQUESTING, State.REBOOTING):
            if self._tries >= self.timing.request_tries:
                self._remembered = None
                return self._discover(now, "no answer to REQUEST")
            return self._send_request(now)
        assert lease is not None  # only BOUND, RENEWING and REBINDING are left with a deadline
        if s is State.BOUND:
            self._declines = 0  # this lease has proven usable
            return self._exchange(State.RENEWING, "T1 reached", now)
        if s is State.RENEWING and now >= lease.rebind_at:
            return self._exchange(State.REBINDING, "T2 reached", now)
        if s is State.REBINDING and now >= lease.expires_at:
            self._remembered = None
            return self._lose("lease expired") + self._discover(now, "lease expired")
        return self._send_request(now)

    def receive(self, data: bytes, now: float) -> list[Event]:
        try:
            msg = wire.decode(data)
        except PacketError as exc:
            if wire.peek(data) == (self._xid, self.mac) and (
                    self.state is State.SELECTING or self.state in _AWAITING_ACK):
                return [Refused("reply", str(exc).removeprefix("dhcp: "))]
            return []
        if msg.op != wire.BOOTREPLY or msg.xid != self._xid or msg.chaddr != self.mac:
            return []
        kind = msg.msg_type
        if kind is MsgType.OFFER and self.state is State.SELECTING:
            return self._on_offer(msg, now)
        if kind in (MsgType.ACK, MsgType.NAK) and self.state in _AWAITING_ACK:
            return (self._on_ack if kind is MsgType.ACK else self._on_nak)(msg, now)
        return [Refused(_what(msg), f"not expected while {self.state.value}")]

    def probed(self, conflict: str | None, now: float) -> list[Event]:
        """The ARP probe of `Probe.address` ended: None if nobody answered."""
        terms = self._terms
        if self.state is not State.CHECKING or terms is None:
            return []
        if conflict is not None:
            return self._decline(terms.address, terms.server, f"address {conflict}", now)
        return self._bind(terms, now)

    def decline(self, reason: str, now: float) -> list[Event]:
        """The node could not use the lease it holds (the kernel refused it): give it back."""
        lease = self.lease
        if lease is None:
            return []
        out = self._lose(f"declined: {reason}")
        return out + self._decline(lease.address, lease.server, reason, now)

    def _to(self, new: State, reason: str) -> list[Event]:
        old, self.state = self.state, new
        return [StateChanged(old, new, reason)] if old is not new else []

    def _lose(self, reason: str) -> list[Event]:
        lost, self.lease = self.lease, None
        return [] if lost is None else [LeaseLost(lost, reason)]

    def _backoff(self) -> float:
        doublings = min(max(self._tries - 1, 0), 16)
        base = min(self.timing.initial * float(1 << doublings), self.timing.max_backoff)
        return base + self.rng.uniform(-self.timing.jitter, self.timing.jitter)

    def _new_xid(self, now: float) -> None:
        old = self._xid
        while self._xid == old:  # a new exchange never answers to the old id
            self._xid = self.rng.getrandbits(32)
        self._tries = 0
        self._began = now

    def _exchange(self, new: State, reason: str, now: float) -> list[Event]:
        self._new_xid(now)
        return self._to(new, reason) + self._send_request(now)

    def _discover(self, now: float, reason: str, retry: bool = False) -> list[Event]:
        out: list[Event] = []
        if not retry:
            self._new_xid(now)
            self._terms = None
            out += self._to(State.INIT, reason) + self._to(State.SELECTING, "sending DISCOVER")
        opts = [(Opt.MESSAGE_TYPE, bytes((MsgType.DISCOVER,)))]
        return out + [self._transmit(opts, now, BROADCAST)]

    def _send_request(self, now: float) -> list[Event]:
        s = self.state
        opts = [(Opt.MESSAGE_TYPE, bytes((MsgType.REQUEST,)))]
        ciaddr, dest = "0.0.0.0", BROADCAST
        if s is State.REQUESTING:
            assert self._terms is not None
            opts += [(Opt.REQUESTED_IP, _packed(self._terms.address)),
                     (Opt.SERVER_ID, _packed(self._terms.server))]
        elif s is State.REBOOTING:
            assert self._remembered is not None
            opts.append((Opt.REQUESTED_IP, _packed(self._remembered)))
        else:  # RENEWING unicasts to the server, REBINDING broadcasts (§4.4.5)
            lease = self.lease
            assert lease is not None
            ciaddr = lease.address
            dest = lease.server if s is State.RENEWING else BROADCAST
            # §4.4.5: half the time left, at least the floor, never past the next edge (T2, expiry).
            edge = lease.rebind_at if s is State.RENEWING else lease.expires_at
            self.deadline = min(now + max((edge - now) / 2, self.timing.renew_floor), edge)
        return [self._transmit(opts, now, dest, ciaddr)]

    def _transmit(self, opts: list[tuple[Opt, bytes]], now: float, dest: str,
                  ciaddr: str = "0.0.0.0") -> Transmit:
        self._tries += 1
        extending = self.state in (State.RENEWING, State.REBINDING)
        if self._tries == 1 or extending:
            self._sent_at = now
        if not extending:
            self.deadline = now + self._backoff()
        secs = min(max(int(now - self._began), 0), 0xFFFF)
        # Without an address we cannot receive unicast: ask for broadcast replies.
        flags = 0 if ciaddr != "0.0.0.0" else wire.FLAG_BROADCAST
        opts += [(Opt.CLIENT_ID, b"\x01" + self.mac), (Opt.PARAM_LIST, PARAMS),
                 (Opt.MAX_SIZE, (1500).to_bytes(2, "big"))]
        msg = Message(op=wire.BOOTREQUEST, xid=self._xid, chaddr=self.mac, options=tuple(opts),
                      secs=secs, flags=flags, ciaddr=ciaddr)
        return Transmit(wire.encode(msg), dest)

    def _on_offer(self, msg: Message, now: float) -> list[Event]:
        try:
            self._terms = terms = lease_check.check(msg)
        except PacketError as exc:  # §4.4.1: wait for another offer
            return [Refused(_what(msg), str(exc).removeprefix("dhcp: "))]
        self._tries = 0
        out = self._to(State.REQUESTING, f"offer of {terms.address} from {terms.server}")
        return out + self._send_request(now)

    def _on_ack(self, msg: Message, now: float) -> list[Event]:
        server = msg.addr(Opt.SERVER_ID)
        asked = self._terms if self.state is State.REQUESTING else None
        if asked is not None and server != asked.server:
            return [Refused(_what(msg), f"we asked {asked.server}")]
        try:
            terms = lease_check.check(msg)
        except PacketError as exc:
            why = str(exc).removeprefix("dhcp: ")
            refused: list[Event] = [Refused(_what(msg), why)]
            if server is None or not all(map(lease_check.unicast, (server, msg.yiaddr))):
                return refused  # nobody to give it back to: ignore it
            return (refused + self._lose(f"refused ACK: {why}")
                    + self._decline(msg.yiaddr, server, why, now))
        if self.lease is not None and terms.address == self.lease.address:
            return self._bind(terms, now)  # a renewal: the address is ours already
        # Moved: the old lease is lost; nobody may hold the new one (RFC 2131 §4.4.1, RFC 5227).
        out = self._lose("server changed our address")
        self._terms = terms
        out += self._to(State.CHECKING, f"ACK of {terms.address} from {terms.server}")
        self.deadline = None
        return out + [Probe(terms.address)]

    def _decline(self, address: str, server: str, reason: str, now: float) -> list[Event]:
        opts = ((Opt.MESSAGE_TYPE, bytes((MsgType.DECLINE,))),
                (Opt.REQUESTED_IP, _packed(address)), (Opt.SERVER_ID, _packed(server)),
                (Opt.CLIENT_ID, b"\x01" + self.mac))
        decline = Message(op=wire.BOOTREQUEST, xid=self._xid, chaddr=self.mac, options=opts)
        t = self.timing
        wait = min(t.decline_wait * float(1 << min(self._declines, 16)), t.decline_max)
        self._declines += 1
        why = f"declined {address}: {reason}; discovering again in {wait:g}s"
        return [Transmit(wire.encode(decline), BROADCAST), *self._restart(why, now, wait)]

    def _restart(self, reason: str, now: float, wait: float) -> list[Event]:
        self._terms = self._remembered = None
        self._new_xid(now)
        self.deadline = now + wait
        return self._to(State.INIT, reason)

    def _bind(self, terms: Terms, now: float) -> list[Event]:
        raw = terms.lease_s
        assert raw is not None  # an ACK's terms always carry one
        lease_s = raw if raw == INFINITE else max(raw, self.timing.min_lease)
        t1, t2 = terms.t1_s, terms.t2_s
        if lease_s == INFINITE:
            t1 = t2 = INFINITE
        elif not (t1 and t2 and 0 < t1 <= t2 <= lease_s):
            t1, t2 = lease_s // 2 or 1, max(lease_s * 7 // 8, lease_s // 2 or 1)
        renewed = self.lease is not None  # only RENEWING/REBINDING hold one here
        self.lease = lease = Lease(**{**vars(terms), "lease_s": lease_s, "t1_s": t1, "t2_s": t2},
                                   start=self._sent_at)
        self._remembered = lease.address
        out = self._to(State.BOUND, f"ACK from {terms.server}")
        # A reply so late that T1 already passed renews at once.
        self.deadline = None if lease.infinite else max(lease.renew_at, now)
        return out + [Renewed(lease) if renewed else Bound(lease)]

    def _on_nak(self, msg: Message, now: float) -> list[Event]:
        held = self._terms if self.state is State.REQUESTING else self.lease
        expected = None if held is None else held.server
        server = msg.addr(Opt.SERVER_ID)
        if expected is not None and server not in (None, expected):
            return [Refused(f"NAK from {server}", f"we asked {expected}")]
        # §3.1: restart discovery, after a pause so a NAK storm cannot make us spin.
        return self._lose("NAK") + self._restart("NAK", now, self.timing.nak_delay)


def _what(msg: Message) -> str:
    kind = msg.msg_type
    server = msg.addr(Opt.SERVER_ID)
    of = "" if kind in (MsgType.NAK, None) else f" of {msg.yiaddr}"
    return f"{kind.name if kind else 'reply'}{of}{' from ' + server if server else ''}"


def _packed(addr: str) -> bytes:
    return ipaddress.IPv4Address(addr).packed

