"""dnsmasq as the lab boot server: DHCP, router advertisements and TFTP on a
bridge inside a test's namespace. Started in the foreground, stopped by PID."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.lab import daemon
from tests.lab.netns import nsexec, run


def require_dnsmasq() -> None:
    if shutil.which("dnsmasq") is None:
        pytest.skip("needs dnsmasq (Debian package dnsmasq-base)")


def bridge_with_tap(ns: str, bridge: str, tap: str, ipv4_cidr: str, ipv6_cidr: str) -> None:
    """A bridge with addresses and one tap port for a VM, all inside `ns`."""
    run(nsexec(ns, "ip", "link", "add", bridge, "type", "bridge", "forward_delay", "0"))
    run(nsexec(ns, "ip", "tuntap", "add", tap, "mode", "tap"))
    run(nsexec(ns, "ip", "link", "set", tap, "master", bridge))
    run(nsexec(ns, "ip", "addr", "add", ipv4_cidr, "dev", bridge))
    run(nsexec(ns, "ip", "-6", "addr", "add", ipv6_cidr, "dev", bridge, "nodad"))
    run(nsexec(ns, "ip", "link", "set", bridge, "up"))
    run(nsexec(ns, "ip", "link", "set", tap, "up"))


@contextmanager
def dnsmasq(ns: str, conf: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    require_dnsmasq()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            nsexec(ns, "dnsmasq", "--no-daemon", "--log-facility=-", "--user=root",
                   "--pid-file=", f"--conf-file={conf}"),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        daemon.wait_ready(proc, lambda: b"started" in log.read_bytes(), "dnsmasq", 10,
                          lambda: log.read_text(errors="replace"))
        yield proc
    finally:
        daemon.stop(proc)


@contextmanager
def http_server(ns: str, address: str, port: int, root: Path, log: Path) -> Iterator[str]:
    """A plain static HTTP server (the standard library's) inside `ns`."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            nsexec(ns, "python3", "-m", "http.server", "--bind", address, "--directory",
                   str(root), str(port)),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while run(nsexec(ns, "python3", "-c",
                         f"import socket; socket.create_connection(('{address}', {port}), 1)"),
                  check=False).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"http.server did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)
        yield f"http://{address}:{port}"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)


# -- DHCP-only dnsmasq for the node's network bring-up tests (tests/net) ------


def dhcp_conf(path: Path, interface: str, first: str, last: str, lease: str = "2m",
              extra: tuple[str, ...] = (), leasefile: Path | None = None) -> Path:
    """A DHCPv4-only dnsmasq config: no DNS (port=0), bound to one interface."""
    lines = [
        f"interface={interface}", "bind-interfaces", "port=0", "log-dhcp",
        f"dhcp-range={first},{last},255.255.255.0,{lease}",
        f"dhcp-leasefile={leasefile or path.with_suffix('.leases')}",
        *extra,
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_for_log(log: Path, needle: str, timeout: float, count: int = 1) -> str:
    """Wait until `needle` appears `count` times in the log; returns the log text."""
    deadline = time.monotonic() + timeout
    while True:
        text = log.read_text(errors="replace")
        if text.count(needle) >= count:
            return text
        if time.monotonic() > deadline:
            pytest.fail(f"{needle!r} x{count} not in dnsmasq log within {timeout}s:\n{text}")
        time.sleep(0.05)
