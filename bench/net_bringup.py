#!/usr/bin/env python3
"""Agent start to a configured address, against dnsmasq on the same machine.

Each run builds a fresh "lan" namespace (bridge + dnsmasq) and a fresh "node"
namespace joined by a veth, starts `zosnode node run --network-only` in the
node namespace and polls the NIC until the leased address is configured. The
peer is pyroute2's own DHCP client (`pyroute2-dhcp-client`, asyncio) doing
the same job in the same topology, interleaved run by run. dnsmasq's log
lines are time-stamped as they arrive, so the server's part (DISCOVER seen
to ACK sent) is measured too. RSS is the agent's VmRSS once the address is up.

dnsmasq runs with `no-ping`: by default it ignores the first DISCOVER for
about 3 s while it pings the address, which would measure dnsmasq, not the
client.

Usage: python3 bench/net_bringup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]


def sh(*argv: str) -> str:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True).stdout


def nsx(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


class Topology:
    def __init__(self, work: Path) -> None:
        tag = uuid.uuid4().hex[:6]
        self.lan, self.node = f"bl{tag}", f"bn{tag}"
        self.work = work
        for ns in (self.lan, self.node):
            sh("ip", "netns", "add", ns)
            sh(*nsx(ns, "ip", "link", "set", "lo", "up"))
        sh(*nsx(self.lan, "ip", "link", "add", "br0", "type", "bridge", "forward_delay", "0"))
        sh(*nsx(self.lan, "ip", "addr", "add", "10.88.0.1/24", "dev", "br0"))
        sh(*nsx(self.lan, "ip", "link", "set", "br0", "up"))
        sh(*nsx(self.lan, "ip", "link", "add", "v0", "type", "veth", "peer", "name", "eth0",
                "netns", self.node))
        sh(*nsx(self.lan, "ip", "link", "set", "v0", "master", "br0"))
        sh(*nsx(self.lan, "ip", "link", "set", "v0", "up"))
        conf = work / "dnsmasq.conf"
        conf.write_text("interface=br0\nbind-interfaces\nport=0\nlog-dhcp\nno-ping\n"
                        "dhcp-range=10.88.0.50,10.88.0.99,255.255.255.0,1h\n"
                        f"dhcp-leasefile={work / 'leases'}\n")
        (work / "leases").write_text("")
        self.log: list[tuple[float, str]] = []
        self.dnsmasq = subprocess.Popen(
            nsx(self.lan, "dnsmasq", "--no-daemon", "--log-facility=-", "--user=root",
                "--pid-file=", f"--conf-file={conf}"),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 10
        while not any("started" in line for _, line in self.log):
            if time.monotonic() > deadline:
                raise SystemExit("dnsmasq did not start")
            time.sleep(0.02)

    def _read(self) -> None:
        assert self.dnsmasq.stdout is not None
        for line in self.dnsmasq.stdout:
            self.log.append((time.monotonic(), line))

    def server_exchange(self) -> float | None:
        """dnsmasq's own view: first DISCOVER seen to ACK sent."""
        seen = [t for t, line in self.log if "DHCPDISCOVER(" in line]
        acked = [t for t, line in self.log if "DHCPACK(" in line]
        return acked[0] - seen[0] if seen and acked else None

    def address(self) -> bool:
        out = subprocess.run(nsx(self.node, "ip", "-4", "-o", "addr", "show", "dev", "eth0"),
                             capture_output=True, text=True).stdout
        return "10.88.0." in out

    def close(self) -> None:
        os.kill(self.dnsmasq.pid, signal.SIGTERM)
        self.dnsmasq.wait(timeout=10)
        for ns in (self.lan, self.node):
            subprocess.run(["ip", "netns", "delete", ns], check=False)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# Console lines that mark the agent's phases (time since the process started).
PHASES = (("first line (interpreter + imports)", "zosnode: config:"),
          ("firewall applied", "firewall applied"),
          ("DISCOVER sent", "sending DISCOVER"),
          ("lease bound", "-> bound"),
          ("NIC chosen, routes set", "chose "))
PHASE_TIMES: list[dict[str, float]] = []


def one_run(client: str, work: Path) -> tuple[float, float | None, int]:
    topo = Topology(work)
    env = dict(os.environ, PYTHONPATH=str(TOP))
    try:
        if client == "zosnode":
            argv = nsx(topo.node, sys.executable, "-m", "zosnode", "node", "run",
                       "--network-only", "--cmdline", "zos.farm=bench",
                       "--resolv-conf", str(work / "resolv.conf"))
        else:
            # The peer expects the link up already; the agent does that itself.
            sh(*nsx(topo.node, "ip", "link", "set", "eth0", "up"))
            argv = nsx(topo.node, shutil.which("pyroute2-dhcp-client") or "pyroute2-dhcp-client",
                       "-R", "eth0")
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, env=env, cwd=work, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        lines: list[tuple[float, str]] = []

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append((time.monotonic() - t0, line))

        threading.Thread(target=read, daemon=True).start()
        try:
            deadline = t0 + 60
            while not topo.address():
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"{client}: no address within 60 s")
                time.sleep(0.005)
            elapsed = time.monotonic() - t0
            rss = rss_kib(proc.pid)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
        if client == "zosnode":
            marks = {}
            for key, needle in PHASES:
                hit = [t for t, line in lines if needle in line]
                if hit:
                    marks[key] = hit[0]
            PHASE_TIMES.append(marks)
        return elapsed, topo.server_exchange(), rss
    finally:
        topo.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    results: dict[str, list[tuple[float, float | None, int]]] = {"zosnode": [], "pyroute2": []}
    for i in range(args.runs):
        for client in ("zosnode", "pyroute2") if i % 2 == 0 else ("pyroute2", "zosnode"):
            with tempfile.TemporaryDirectory(prefix="zosnode-netbench-") as work:
                results[client].append(one_run(client, Path(work)))
    print(f"machine: {platform.node()} {os.cpu_count()} cores, {platform.platform()}, "
          f"python {platform.python_version()}, dnsmasq {sh('dnsmasq', '--version').split()[2]}")
    med = {}
    for client, rows in results.items():
        times = [r[0] for r in rows]
        server = [r[1] for r in rows if r[1] is not None]
        med[client] = statistics.median(times)
        print(f"{client:9} start->address median {med[client]*1000:7.0f} ms "
              f"(min {min(times)*1000:.0f}, max {max(times)*1000:.0f}; n={len(rows)}); "
              f"dnsmasq DISCOVER->ACK median {statistics.median(server)*1000:.1f} ms; "
              f"RSS median {statistics.median(r[2] for r in rows)/1024:.1f} MiB")
    print(f"ratio zosnode/pyroute2 (start->address): {med['zosnode']/med['pyroute2']:.2f}")
    print("zosnode phases, median ms since process start:")
    for key, _ in PHASES:
        got = [m[key] for m in PHASE_TIMES if key in m]
        if got:
            print(f"  {key:36} {statistics.median(got)*1000:7.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
