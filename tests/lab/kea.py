"""ISC Kea (kea-dhcp4) as a second, independent DHCP server for the lab.

Run by hand in the foreground inside a test's namespace, with its config,
lease file, pid file and lock file in the test's temp dir and no control
socket, and stopped by its PID. The Debian package's own service is never
used: nothing here touches /etc/kea, /run/kea or /var/lib/kea.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.lab import daemon
from tests.lab.netns import nsexec


def require_kea() -> None:
    if shutil.which("kea-dhcp4") is None:
        pytest.skip("needs kea-dhcp4 (Debian package kea-dhcp4-server)")


def kea_conf(path: Path, interface: str, subnet: str, pool: str, router: str,
             lease_s: int = 20, renew_s: int = 4, rebind_s: int = 15,
             leasefile: Path | None = None) -> Path:
    """A DHCPv4 config serving one subnet on one interface, leases kept in the temp dir."""
    conf = {"Dhcp4": {
        # A bridge is not "running" until a port has carrier, which may be after
        # Kea starts (the node brings its end up itself): keep trying for 30 s.
        "interfaces-config": {"interfaces": [interface], "dhcp-socket-type": "raw",
                              "service-sockets-max-retries": 300,
                              "service-sockets-retry-wait-time": 100},
        "lease-database": {"type": "memfile", "persist": True, "lfc-interval": 0,
                           "name": str(leasefile or path.with_suffix(".leases.csv"))},
        "valid-lifetime": lease_s, "min-valid-lifetime": lease_s,
        "max-valid-lifetime": lease_s,
        "renew-timer": renew_s, "rebind-timer": rebind_s,
        "subnet4": [{
            "id": 1, "subnet": subnet, "pools": [{"pool": pool}],
            "option-data": [{"name": "routers", "data": router},
                            {"name": "domain-name-servers", "data": router},
                            {"name": "domain-name", "data": "lab.example"}],
        }],
        "loggers": [{"name": "kea-dhcp4", "severity": "INFO",
                     "output_options": [{"output": "stdout", "flush": True}]}],
    }}
    path.write_text(json.dumps(conf, indent=1))
    return path


@contextmanager
def kea(ns: str, conf: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    require_kea()
    run_dir = conf.parent / "kea-run"
    run_dir.mkdir(exist_ok=True)
    env = dict(os.environ, KEA_PIDFILE_DIR=str(run_dir), KEA_LOCKFILE_DIR=str(run_dir))
    with open(log, "wb") as out:
        proc = subprocess.Popen(nsexec(ns, "kea-dhcp4", "-c", str(conf)),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env)
    try:
        daemon.wait_ready(proc, lambda: b"DHCP4_STARTED" in log.read_bytes(), "kea-dhcp4", 15,
                          lambda: log.read_text(errors="replace"))
        yield proc
    finally:
        daemon.stop(proc, grace=10)
