"""Lab topology for bring-up tests: a "lan" namespace with a bridge and dnsmasq,
"node" namespaces joined to it by veth pairs, the node agent as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.lab import daemon
from tests.lab.dnsmasq import dhcp_conf, dnsmasq, require_dnsmasq
from tests.lab.netns import netns, nsexec, require_root, run, unique_name

REPO = Path(__file__).resolve().parents[2]
LAN_ADDR = "10.77.0.1"


@dataclass
class Lan:
    ns: str
    bridge: str
    tmp: Path
    ports: list[str] = field(default_factory=list)

    def plug(self, node_ns: str, ifname: str, bridge: str | None = None) -> str:
        """A veth from `node_ns` (named ifname there) into a bridge; returns the lan end."""
        peer = unique_name("v")
        run(nsexec(self.ns, "ip", "link", "add", peer, "type", "veth", "peer", "name", ifname,
                   "netns", node_ns))
        run(nsexec(self.ns, "ip", "link", "set", peer, "master", bridge or self.bridge))
        run(nsexec(self.ns, "ip", "link", "set", peer, "up"))
        self.ports.append(peer)
        return peer

    def add_bridge(self, name: str, cidr: str | None = None) -> str:
        run(nsexec(self.ns, "ip", "link", "add", name, "type", "bridge", "forward_delay", "0"))
        if cidr:
            run(nsexec(self.ns, "ip", "addr", "add", cidr, "dev", name))
        run(nsexec(self.ns, "ip", "link", "set", name, "up"))
        return name

    def link(self, port: str, up: bool) -> None:
        run(nsexec(self.ns, "ip", "link", "set", port, "up" if up else "down"))

    @contextmanager
    def dhcp(self, name: str = "d", first: str = "10.77.0.50", last: str = "10.77.0.99",
             extra: tuple[str, ...] = (), fresh: bool = False) -> Iterator[Path]:
        """dnsmasq serving DHCP on the bridge; yields its log path."""
        conf = self.tmp / f"{name}.conf"
        leases = self.tmp / f"{name}.leases"
        if fresh or not leases.exists():
            leases.write_text("")
        dhcp_conf(conf, self.bridge, first, last, extra=(
            "dhcp-option=option:dns-server,0.0.0.0",  # 0.0.0.0: dnsmasq sends its own address
            # no-ping: dnsmasq otherwise ignores the first DISCOVER for ~3 s while it
            # pings the address; that is its latency, not ours.
            "no-ping", *extra), leasefile=leases)
        log = self.tmp / f"{name}.log"
        with dnsmasq(self.ns, conf, log):
            yield log


    @contextmanager
    def rogue(self, the_plan: dict[str, object], name: str = "rogue") -> Iterator[RogueLog]:
        """tests/net/rogue_dhcp.py serving `the_plan` on the bridge; yields its log."""
        plan_path = self.tmp / f"{name}.json"
        plan_path.write_text(json.dumps(the_plan))
        log = RogueLog(self.tmp / f"{name}.jsonl")
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.Popen(
            nsexec(self.ns, sys.executable, "-m", "tests.net.rogue_dhcp", str(plan_path),
                   str(log.path)), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.tmp / f"{name}.err", "wb"), env=env)  # noqa: SIM115
        try:
            daemon.wait_ready(
                proc, lambda: bool(log.entries()), "rogue DHCP server", 10,
                lambda: (self.tmp / f"{name}.err").read_text(errors="replace"))
            yield log
        finally:
            daemon.stop(proc)


class RogueLog:
    """What the rogue server received, one dict per request."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[dict[str, object]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines()
                if line.endswith("}")]

    def received(self, kind: str) -> list[dict[str, object]]:
        return [e for e in self.entries() if e.get("type") == kind]

    def wait(self, kind: str, timeout: float, count: int = 1) -> list[dict[str, object]]:
        deadline = time.monotonic() + timeout
        while len(got := self.received(kind)) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"rogue server never received {count} {kind} in {timeout}s: "
                            f"{self.entries()}")
            time.sleep(0.05)
        return got


@contextmanager
def make_lan(tmp: Path, cidr: str = f"{LAN_ADDR}/24") -> Iterator[Lan]:
    require_root()
    require_dnsmasq()
    tmp.mkdir(parents=True, exist_ok=True)
    with netns("zl") as ns:
        bridge = "br0"
        run(nsexec(ns, "ip", "link", "add", bridge, "type", "bridge", "forward_delay", "0"))
        run(nsexec(ns, "ip", "addr", "add", cidr, "dev", bridge))
        run(nsexec(ns, "ip", "link", "set", bridge, "up"))
        yield Lan(ns, bridge, tmp)


@pytest.fixture
def lan(tmp_path: Path) -> Iterator[Lan]:
    with make_lan(tmp_path) as lan:
        yield lan


@pytest.fixture
def node_ns() -> Iterator[str]:
    with netns("zn") as ns:
        yield ns


class NodeProc:
    """`zosnode node run` inside a namespace; console lines collected by a thread."""

    def __init__(self, ns: str, args: list[str], tmp: Path) -> None:
        self.lines: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            nsexec(ns, sys.executable, "-m", "zosnode", "node", "run",
                   "--resolv-conf", str(tmp / "resolv.conf"), *args),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self._cond.notify_all()

    def text(self) -> str:
        with self._cond:
            return "\n".join(line for _, line in self.lines)

    def wait_line(self, needle: str, timeout: float, after: int = 0) -> tuple[int, float, str]:
        """The first line (index >= after) containing needle: (index, time, line)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, (t, line) in enumerate(self.lines[after:], after):
                    if needle in line:
                        return i, t, line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    pytest.fail(f"node never printed {needle!r} within {timeout}s:\n"
                                + "\n".join(x for _, x in self.lines))
                self._cond.wait(min(left, 0.2))

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        return self.proc.returncode


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[object]:
    with ExitStack() as stack:
        def start(ns: str, *args: str) -> NodeProc:
            node = NodeProc(ns, list(args), tmp_path)
            stack.callback(node.stop)
            return node
        yield start


def addresses(ns: str, ifname: str) -> list[str]:
    out = run(nsexec(ns, "ip", "-4", "-o", "addr", "show", "dev", ifname)).stdout
    return [line.split()[3] for line in out.splitlines()]


def default_routes(ns: str) -> str:
    return run(nsexec(ns, "ip", "-4", "route", "show", "default")).stdout


def mac_of(ns: str, ifname: str) -> str:
    out = run(nsexec(ns, "ip", "-o", "link", "show", "dev", ifname)).stdout
    return out.split("link/ether ")[1].split()[0]


def all_routes(ns: str) -> str:
    return run(nsexec(ns, "ip", "-4", "route", "show", "table", "all")).stdout
