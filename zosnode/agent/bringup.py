"""Firewall first (nothing inbound), then NICs, DHCP and the choice (docs/network-bringup.md);
a lease the kernel refuses is removed and declined: no DHCP server can stop the node."""

import contextlib
import errno
import functools
import ipaddress
import os
import random
import socket
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from zosnode.agent.cmdline import Config
from zosnode.net import audit, dhcp_io
from zosnode.net import dhcp_client as dhcp
from zosnode.net.choose import Candidate, choose, decided, preferred
from zosnode.net.errors import NetSystemError
from zosnode.net.firewall import Firewall
from zosnode.net.links import Links, Nic, accept_router_adverts, resolv_conf_text, write_atomically

CHOSEN_METRIC, BACKUP_METRIC_BASE = 0, 1000
HUB_PROBE_TIMEOUT, CARRIER_TIMEOUT_S = 1.5, 10.0
SETTLE_S = 2.0  # after the first lease, how long other NICs may still answer
FIREWALL_CHECK_EVERY, AUDIT_EVERY, SLAAC_POLL_EVERY = 10.0, 60.0, 1.0
DEFAULT_ROUTE = "0.0.0.0/0"


@dataclass
class Network:
    """What the rest of the node sees: the chosen NIC and its lease, kept current."""

    chosen: Nic | None = None
    leases: dict[str, dhcp.Lease] = field(default_factory=dict)  # by NIC name
    changed: trio.Event = field(default_factory=trio.Event)
    audit_findings: list[audit.Finding] = field(default_factory=list)
    last_refusal: tuple[str, float] | None = None  # the last DHCP reply refused, at wall time

    @property
    def lease(self) -> dhcp.Lease | None:
        return None if self.chosen is None else self.leases.get(self.chosen.name)

    def addresses(self) -> list[str]:
        return [f"{lease.address}/{lease.prefixlen}" for lease in self.leases.values()]

    def _bump(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


@dataclass(frozen=True)
class Options:
    resolv_conf: Path = Path("/etc/resolv.conf")
    on_waiting: Callable[[], None] | None = None  # once firewall, links and DHCP run


class Bringup:
    def __init__(self, config: Config, say: dhcp_io.Say, options: Options | None = None) -> None:
        self.config, self.say = config, say
        self.options = options or Options()
        self.rng = random.SystemRandom()
        self.network = Network()
        self._nics: dict[str, Nic] = {}
        self._controls: dict[str, dhcp_io.NicControl] = {}
        self._first_lease = trio.Event()
        self._settled = False
        self._links: Links  # from run()

    async def run(self, *, task_status: trio.TaskStatus[Network] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Bring the network up; `started(network)` once a NIC is chosen; runs forever."""
        firewall = Firewall()
        links = self._links = Links()
        try:
            firewall.apply()
            self.say(f"firewall applied (table {firewall.table}): inbound dropped except "
                     "replies, DHCP and neighbour discovery; forwarding dropped")
            nics = links.nics()
            if self.config.net is not None:
                pinned = [n for n in nics if n.name == self.config.net]
                if not pinned:
                    self.say(f"zos.net={self.config.net}: no such NIC; using all of them")
                nics = pinned or nics
            if not nics:
                self.say("no Ethernet NIC found")
            self._nics = {n.name: n for n in nics}
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._guard_firewall, firewall)
                nursery.start_soon(self._audit_loop)
                nursery.start_soon(self._watch_ipv6, nics)
                for nic in nics:
                    slaac = accept_router_adverts(nic)
                    links.set_up(nic)
                    self.say(f"{nic.name}: up (mac {nic.mac.hex(':')}"
                             f"{', IPv6 SLAAC on' if slaac else ''})")
                for nic in nics:
                    rng = random.Random(self.rng.getrandbits(64))
                    ctl = self._controls[nic.name] = dhcp_io.NicControl()
                    await nursery.start(dhcp_io.run_nic, nic, dhcp.DhcpClient(nic.mac, rng), links,
                                        self._on_event, self.say, 0.25, CARRIER_TIMEOUT_S, ctl)
                if self.options.on_waiting is not None:
                    self.options.on_waiting()
                await self._first_lease.wait()
                with trio.move_on_after(SETTLE_S):
                    while True:
                        changed = self.network.changed  # a change during the probe counts
                        if await self._decided():
                            break
                        await changed.wait()
                self._settled = True
                await self._rechoose()
                while self.network.chosen is None:
                    await self.network.changed.wait()
                task_status.started(self.network)
        finally:
            links.close()
            firewall.close()

    async def _on_event(self, nic: Nic, ev: dhcp.Event) -> None:
        if isinstance(ev, dhcp.StateChanged):
            self.say(f"{nic.name}: dhcp {ev.old.value} -> {ev.new.value} ({ev.reason})")
        elif isinstance(ev, dhcp.Bound | dhcp.Renewed):
            await self._leased(nic, ev.lease)
        elif isinstance(ev, dhcp.Refused):
            self.network.last_refusal = (f"{nic.name}: {ev.describe()}", time.time())
        elif isinstance(ev, dhcp.LeaseLost):
            chosen = self.network.chosen == nic
            self._unconfigure(nic, ev.lease, chosen)
            self.say(f"{nic.name}: lease on {ev.lease.address} lost ({ev.reason}); address removed")
            if chosen:
                self.say(f"{nic.name}: no longer the chosen NIC")
            await self._forget(nic, chosen)

    async def _forget(self, nic: Nic, chosen: bool) -> None:
        self.network.leases.pop(nic.name, None)
        if chosen:
            self.network.chosen = None
            if self._settled:
                await self._rechoose()
        self.network._bump()

    async def _leased(self, nic: Nic, lease: dhcp.Lease) -> None:
        """Bound or renewed: configured (a renewal: what changed), or refused and declined."""
        old = self.network.leases.get(nic.name)
        chosen = self.network.chosen == nic
        if old is not None and old.same_terms(lease):
            self.say(f"{nic.name}: lease renewed for {lease.lease_s}s")
        else:
            for note in lease.notes:
                self.say(f"{nic.name}: lease {lease.address}: {note}")
            try:
                self._configure(nic, lease, old)
                if chosen:
                    self._configure_chosen(nic, lease, old)
            except NetSystemError as exc:
                if old is not None:
                    self._unconfigure(nic, old, chosen)
                self._refuse(nic, lease, exc, chosen)
                await self._forget(nic, chosen)
                return
            renewed = "renewed with new terms: " if old is not None else ""
            self.say(f"{nic.name}: lease {renewed}{lease.describe()}")
        self.network.leases[nic.name] = lease
        self._first_lease.set()
        self.network._bump()
        if self._settled and self.network.chosen is None:
            await self._rechoose()

    def _configure(self, nic: Nic, lease: dhcp.Lease, old: dhcp.Lease | None) -> None:
        """Address, option 121 routes and the backup default route (`old`: a renewal's)."""
        links, metric = self._links, BACKUP_METRIC_BASE + nic.index
        links.add_address(nic, lease.address, lease.prefixlen)
        if old is not None and old.prefixlen != lease.prefixlen:
            links.del_address(nic, old.address, old.prefixlen)
        # A gateway must be reachable when its route goes in: on-link routes first.
        for route in sorted(lease.routes, key=lambda r: r.gateway is not None):
            links.set_route(nic, route.destination, route.gateway, metric)
        if lease.routers:
            links.set_route(nic, DEFAULT_ROUTE, lease.routers[0], metric)
        if old is not None:
            kept = {r.destination for r in lease.routes}
            for route in old.routes:
                if route.destination not in kept:
                    links.del_route(nic, route.destination, metric)
            if old.routers and not lease.routers:
                links.del_route(nic, DEFAULT_ROUTE, metric)

    def _configure_chosen(self, nic: Nic, lease: dhcp.Lease, old: dhcp.Lease | None) -> None:
        if lease.routers:
            self._links.set_route(nic, DEFAULT_ROUTE, lease.routers[0], CHOSEN_METRIC)
        elif old is not None and old.routers:
            self._links.del_route(nic, DEFAULT_ROUTE, CHOSEN_METRIC)
        if lease.dns and (old is None or (old.dns, old.search_domains) !=
                          (lease.dns, lease.search_domains)):
            write_atomically(self.options.resolv_conf,
                             resolv_conf_text(lease.dns, lease.search_domains))

    def _unconfigure(self, nic: Nic, lease: dhcp.Lease, chosen: bool) -> None:
        """Undo `_configure` (and `_configure_chosen`) step by step; never raises."""
        links, metric = self._links, BACKUP_METRIC_BASE + nic.index
        metrics = (CHOSEN_METRIC, metric) if chosen else (metric,)
        steps = [functools.partial(links.del_route, nic, DEFAULT_ROUTE, m) for m in metrics]
        steps += [functools.partial(links.del_route, nic, r.destination, metric)
                  for r in lease.routes]
        steps.append(functools.partial(links.del_address, nic, lease.address, lease.prefixlen))
        for step in steps:
            try:
                step()
            except NetSystemError as exc:
                self.say(f"{nic.name}: {exc}")

    def _refuse(self, nic: Nic, lease: dhcp.Lease, exc: NetSystemError, chosen: bool) -> None:
        self.say(f"{nic.name}: cannot use the lease on {lease.address} ({exc}); declining it")
        self._unconfigure(nic, lease, chosen)
        self._controls[nic.name].decline(str(exc))

    async def _rechoose(self) -> None:
        while True:
            probes = {name: await self._reaches_hub(self._nics[name], lease)
                      for name, lease in sorted(self.network.leases.items())}
            leases = self.network.leases
            cands = [Candidate(n, n in leases, probes.get(n, False),
                               n in leases and bool(leases[n].routers)) for n in self._nics]
            choice = choose(cands, self.config.net if self.config.net in self._nics else None)
            if choice.name is None:
                self.say(f"no NIC chosen yet: {choice.reason}")
                return
            nic = self._nics[choice.name]
            lease = self.network.leases[nic.name]
            if (old := self.network.chosen) is not None and old != nic:
                try:
                    self._links.del_route(old, DEFAULT_ROUTE, CHOSEN_METRIC)
                except NetSystemError as exc:
                    self.say(f"{old.name}: {exc}")
            try:
                self._configure_chosen(nic, lease, None)
            except NetSystemError as exc:
                # Not this NIC, then: its lease goes back, the others are tried.
                self.network.leases.pop(nic.name, None)
                self.network.chosen = None
                self._refuse(nic, lease, exc, chosen=True)
                self.network._bump()
                continue
            self.network.chosen = nic
            gw = lease.routers[0] if lease.routers else "none (on-link only)"
            self.say(f"chose {nic.name} ({choice.reason}): address {lease.address}/"
                     f"{lease.prefixlen} gateway {gw} dns {','.join(lease.dns) or 'none'}")
            self.network._bump()
            return

    async def _decided(self) -> bool:
        carrier: set[str] = set()
        for name, nic in self._nics.items():
            with contextlib.suppress(NetSystemError):  # gone, unreadable: no carrier, as for DHCP
                if self._links.carrier(nic):
                    carrier.add(name)
        leased = self.network.leases
        best = preferred(carrier)
        if carrier <= leased.keys() or best is None or best not in leased:
            return decided(leased, carrier, False)
        return decided(leased, carrier, await self._reaches_hub(self._nics[best], leased[best]))

    async def _reaches_hub(self, nic: Nic, lease: dhcp.Lease) -> bool:
        for hub in self.config.hubs:
            parts = urllib.parse.urlsplit(hub)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            if await _tcp_probe(nic, lease.address, parts.hostname or "", port):
                return True
        return False

    async def _guard_firewall(self, firewall: Firewall) -> None:
        while True:
            await trio.sleep(FIREWALL_CHECK_EVERY)
            if not firewall.check():
                firewall.apply()
                self.say(f"firewall: ruleset changed behind our back; re-applied "
                         f"(table {firewall.table})")

    async def _watch_ipv6(self, nics: list[Nic]) -> None:
        known: dict[str, set[str]] = {n.name: set() for n in nics}
        while True:
            for nic in nics:
                try:
                    held = self._links.addresses(nic, socket.AF_INET6)
                except NetSystemError:
                    continue  # a NIC that went away: its DHCP task says so
                now = {f"{a}/{p}" for a, p in held if not ipaddress.ip_address(a).is_link_local}
                for addr in sorted(now - known[nic.name]):
                    self.say(f"{nic.name}: IPv6 address {addr} (router advertisement)")
                for addr in sorted(known[nic.name] - now):
                    self.say(f"{nic.name}: IPv6 address {addr} gone")
                known[nic.name] = now
            await trio.sleep(SLAAC_POLL_EVERY)

    async def _audit_loop(self) -> None:
        reported: set[tuple[str, str, int]] = set()
        me = os.getpid()
        while True:
            # Our DHCP client listens on UDP 68 (only server replies get in); others are news.
            findings = [f for f in audit.scan()
                        if not (f.proto.startswith("udp") and f.port == 68 and f.pids == (me,))]
            self.network.audit_findings = findings
            for f in findings:
                if (f.proto, f.address, f.port) not in reported:
                    self.say(f"audit: socket listening on a non-loopback address: {f.describe()}")
            reported = {(f.proto, f.address, f.port) for f in findings}
            await trio.sleep(AUDIT_EVERY)


async def _tcp_probe(nic: Nic, source: str, host: str, port: int) -> bool:
    with trio.move_on_after(HUB_PROBE_TIMEOUT):
        try:
            infos = await trio.socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
        except OSError:
            return False
        for _family, _type, _proto, _name, addr in infos:
            if ipaddress.ip_address(addr[0]).is_loopback:
                continue
            with trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    # (inside the try: a NIC that went away is "does not reach")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, nic.name.encode())
                    await sock.bind((source, 0))
                    await sock.connect(addr)
                    return True
                except OSError as exc:
                    if exc.errno == errno.ECONNREFUSED:
                        return True  # the host answered: the path works
    return False
