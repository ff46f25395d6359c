"""A boot network in one namespace: bridge + tap for a VM, dnsmasq (DHCP, RA,
TFTP with the farm's iPXE script), a static server for kernel and initramfs,
and optionally the real hub. Everything is stopped by PID and the namespace
deleted by name on exit. Shared by the VM tests, the boot benchmark and
`make vm`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.lab.dnsmasq import bridge_with_tap, dnsmasq, http_server
from tests.lab.netns import netns, nsexec

TOP = Path(__file__).resolve().parents[2]
LAB_IP = "10.99.0.1"
NETWORK = "10.99.0.0/24"
HUB = f"http://{LAB_IP}:8080"
BOOT = f"http://{LAB_IP}:8000"
BRIDGE, TAP = "zb0", "zt0"


@dataclass
class BootLab:
    ns: str
    work: Path
    www: Path  # serves BOOT: put files under www/boot/<channel>/
    hub_data: Path
    hub: subprocess.Popen[bytes] | None = None

    def in_ns(self, *argv: str, timeout: float = 120) -> str:
        env = dict(os.environ, PYTHONPATH=str(TOP))
        proc = subprocess.run(nsexec(self.ns, *argv), capture_output=True, text=True,
                              timeout=timeout, cwd=TOP, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:6])}: {proc.stderr[-2000:]}")
        return proc.stdout

    def hub_get(self, path: str) -> str:
        """GET `path` from the lab's hub, from inside the namespace (the hub listens there)."""
        return self.in_ns(sys.executable, "-c",
                          "import urllib.request,sys;sys.stdout.write(urllib.request.urlopen("
                          f"'{HUB}{path}',timeout=5).read().decode())")

    def hub_json(self, path: str) -> Any:
        return json.loads(self.hub_get(path))

    def start_hub(self, publisher_id: str) -> None:
        self.hub_data.mkdir(exist_ok=True)
        log_path = self.work / "hub.log"
        with open(log_path, "wb") as log:
            self.hub = subprocess.Popen(
                nsexec(self.ns, sys.executable, "-m", "zosnode", "hub", "serve", "--data",
                       str(self.hub_data), "--listen", f"{LAB_IP}:8080", "--publisher",
                       publisher_id), stdout=log, stderr=subprocess.STDOUT, cwd=TOP)
        deadline = time.monotonic() + 20
        while b"listening on" not in log_path.read_bytes():
            if self.hub.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"hub did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)

    def push(self, publisher_key: Path, store: Path, manifest: Path,
             root: Path | None = None) -> None:
        roots = ["--root", str(root)] if root is not None else []
        self.in_ns(sys.executable, "-m", "zosnode", "hub", "push", "--hub", HUB, "--key",
                   str(publisher_key), "--store", str(store), *roots, "--manifest", str(manifest))

    def stop_hub(self) -> None:
        if self.hub is not None and self.hub.poll() is None:
            os.kill(self.hub.pid, signal.SIGTERM)
            try:
                self.hub.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.hub.pid, signal.SIGKILL)
                self.hub.wait(timeout=5)


def bootstrap_server(out: Path, farm: str, channel: str, *extra: str) -> Path:
    """`zosnode bootstrap dnsmasq` for this lab; returns the config path."""
    proc = subprocess.run(
        [sys.executable, "-m", "zosnode", "bootstrap", "dnsmasq", "--farm", farm,
         "--channel", channel, "-o", str(out), "--interface", BRIDGE, "--network", NETWORK,
         "--range", "10.99.0.50,10.99.0.99", *extra],
        capture_output=True, text=True, cwd=TOP, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"zosnode bootstrap dnsmasq: {proc.stderr}")
    return out / "dnsmasq.conf"


@contextmanager
def boot_lab(work: Path, farm: str, channel: str, *bootstrap_args: str) -> Iterator[BootLab]:
    """The namespace with bridge, tap, dnsmasq and the static boot server running."""
    www = work / "www"
    www.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        ns = stack.enter_context(netns("zbl"))
        bridge_with_tap(ns, BRIDGE, TAP, f"{LAB_IP}/24", "fd99::1/64")
        conf = bootstrap_server(work / "bootserver", farm, channel, *bootstrap_args)
        stack.enter_context(dnsmasq(ns, conf, work / "dnsmasq.log"))
        stack.enter_context(http_server(ns, LAB_IP, 8000, www, work / "http.log"))
        lab = BootLab(ns, work, www, work / "hub-data")
        stack.callback(lab.stop_hub)
        yield lab
