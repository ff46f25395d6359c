"""No inbound: a full TCP scan and a UDP probe from a neighbour find nothing open
while a process in the node's namespace listens on 0.0.0.0; the audit names it;
outbound still works; a tampered ruleset is put back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.lab.dnsmasq import http_server
from tests.lab.netns import nsexec, run
from tests.net.conftest import Lan, NodeProc, addresses

HERE = Path(__file__).parent
PORT = 7777
UDP_COMMON = "7,53,67,69,111,123,137,161,500,514,1900,4789,5353,7777,11211"
Start = Callable[..., NodeProc]


@contextmanager
def listener(ns: str) -> Iterator[int]:
    proc = subprocess.Popen(nsexec(ns, sys.executable, str(HERE / "listener.py"), str(PORT)),
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ready"), line
        yield int(line.split()[1])
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)


def scan(ns: str, host: str, *extra: str) -> dict[str, dict[str, object]]:
    out = run(nsexec(ns, sys.executable, str(HERE / "portscan.py"), host, *extra)).stdout
    result: dict[str, dict[str, object]] = json.loads(out)
    return result


def test_scanner_sees_open_ports_without_a_firewall(lan: Lan, node_ns: str) -> None:
    """The control: the same scan does find the listener when nothing filters it."""
    lan.plug(node_ns, "eth0")
    run(nsexec(node_ns, "ip", "addr", "add", "10.77.0.9/24", "dev", "eth0"))
    run(nsexec(node_ns, "ip", "link", "set", "eth0", "up"))
    time.sleep(0.2)
    with listener(node_ns):
        found = scan(lan.ns, "10.77.0.9", "--ports", "7000-8000", "--udp", UDP_COMMON)
    assert found["tcp"]["accepted"] == [PORT]
    assert len(found["tcp"]["refused"]) == 1000  # type: ignore[arg-type]
    assert found["udp"]["answered"] == [PORT]
    assert found["udp"]["icmp_unreachable"]


def test_no_inbound_audit_and_outbound(lan: Lan, node_ns: str, start_node: Start) -> None:
    lan.plug(node_ns, "eth0")
    with lan.dhcp(), listener(node_ns) as pid:
        node = start_node(node_ns, "--cmdline", "zos.hub=http://10.77.0.1:8080",
                          "--network-only")
        node.wait_line("network up on eth0", 30)
        _, _, line = node.wait_line("audit: socket listening", 5)
        (addr,) = addresses(node_ns, "eth0")
        ip = addr.split("/")[0]
        assert f"0.0.0.0:{PORT}" in node.text() and f"pid {pid}" in node.text()

        t0 = time.monotonic()
        found = scan(lan.ns, ip, "--udp", UDP_COMMON)
        assert time.monotonic() - t0 < 120
        assert found["tcp"]["accepted"] == [] and found["tcp"]["refused"] == []
        assert found["tcp"]["silent"] == 65535
        assert found["udp"]["answered"] == [] and found["udp"]["icmp_unreachable"] == []

        # Outbound connections the node opens still work (their replies come back).
        with http_server(lan.ns, "10.77.0.1", 8099, lan.tmp, lan.tmp / "http.log") as url:
            (lan.tmp / "hello.txt").write_text("hi from the lan\n")
            got = run(nsexec(node_ns, "curl", "-sS", "--max-time", "5", f"{url}/hello.txt"))
            assert got.stdout == "hi from the lan\n"

        # Someone opens a hole; the node notices and puts its ruleset back.
        table = node.text().split("(table ")[1].split(")")[0]
        mark = len(node.lines)
        run(nsexec(node_ns, "nft", "insert", "rule", "inet", table, "input", "tcp", "dport",
                   str(PORT), "accept"))
        assert scan(lan.ns, ip, "--ports", str(PORT))["tcp"]["accepted"] == [PORT]
        node.wait_line("re-applied", 15, mark)
        found = scan(lan.ns, ip, "--ports", f"{PORT - 10}-{PORT + 10}")
        assert found["tcp"]["accepted"] == [] and found["tcp"]["silent"] == 21
        tables = run(nsexec(node_ns, "nft", "list", "tables")).stdout.split()
        assert table not in tables and len([t for t in tables if "zosnode" in t]) == 1
