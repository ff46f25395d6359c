"""The whole story in a VM: netboot, a refused manifest, ready, heartbeat, no
listener, upgrade. One boot carries every check (booting is the slow part).

The VM netboots through its firmware iPXE (dnsmasq: DHCP, RA, TFTP) with
kernel and initramfs from a static server, runs `zosnode node run` as PID 1
with the demo OS's trust anchor compiled into the artifact, and talks to the
real hub in the same namespace.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from examples import demo_os
from tests.boot.conftest import TOP, build_initramfs, build_zipapp, require_debian_tools
from tests.lab import qemu
from tests.lab.dnsmasq import bridge_with_tap, dnsmasq, http_server
from tests.lab.netns import netns, nsexec, run

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("root_lab")]
LAB_IP = "10.99.0.1"
HUB = f"http://{LAB_IP}:8080"
BOOT = f"http://{LAB_IP}:8000"
READY = r"zosnode: ready (\d+) ([0-9a-f]{64})"
BOOT_S = 180  # QEMU start to ready, software emulation on shared cores
POLL_S = 30 + 5 + 30  # the agent's default poll interval and jitter, plus a release's start


def _in_ns(ns: str, *argv: str) -> str:
    proc = subprocess.run(nsexec(ns, *argv), capture_output=True, text=True, timeout=120,
                          cwd=TOP, env={"PYTHONPATH": str(TOP), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, f"{' '.join(argv[:6])}: {proc.stderr[-2000:]}"
    return proc.stdout


def _nodes(ns: str) -> list[dict[str, object]]:
    out = _in_ns(ns, sys.executable, "-c",
                 "import urllib.request,sys;sys.stdout.write(urllib.request.urlopen("
                 f"'{HUB}/api/v1/nodes',timeout=5).read().decode())")
    nodes: list[dict[str, object]] = json.loads(out)["nodes"]
    return nodes


def _wait_listed(ns: str, node_id: str, release: int) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while True:
        for n in _nodes(ns):
            if n["node_id"] == node_id and n["release"] == release:
                return n
        assert time.monotonic() < deadline, f"the hub never listed {node_id} at {release}"
        time.sleep(0.5)


def test_vm_netboots_to_ready_refuses_a_stranger_and_upgrades(tmp_path: Path) -> None:
    require_debian_tools()
    kit = demo_os.build(tmp_path / "kit")
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    zipapp = build_zipapp(app_dir, anchor=kit.anchor)
    boot = tmp_path / "www" / "boot" / demo_os.CHANNEL
    proc = build_initramfs(zipapp, boot)
    assert proc.returncode == 0, proc.stderr

    with netns("zr") as ns:
        bridge_with_tap(ns, "zb0", "zt0", f"{LAB_IP}/24", "fd99::1/64")
        server = tmp_path / "bootserver"
        cli = subprocess.run(
            [sys.executable, "-m", "zosnode", "bootstrap", "dnsmasq", "--farm", "lab",
             "--channel", demo_os.CHANNEL, "--hub", HUB, "--boot-url", BOOT,
             "--kernel-arg", "quiet", "-o", str(server), "--interface", "zb0",
             "--network", "10.99.0.0/24", "--range", "10.99.0.50,10.99.0.99"],
            capture_output=True, text=True, cwd=TOP, timeout=60)
        assert cli.returncode == 0, cli.stderr
        hub_data = tmp_path / "hub-data"
        hub_data.mkdir()
        hub_log = open(tmp_path / "hub.log", "wb")  # noqa: SIM115 - closed below
        hub = subprocess.Popen(
            nsexec(ns, sys.executable, "-m", "zosnode", "hub", "serve", "--data", str(hub_data),
                   "--listen", f"{LAB_IP}:8080", "--publisher", kit.publisher_id),
            stdout=hub_log, stderr=subprocess.STDOUT, cwd=TOP)
        try:
            deadline = time.monotonic() + 20
            while b"listening on" not in (tmp_path / "hub.log").read_bytes():
                assert hub.poll() is None and time.monotonic() < deadline, \
                    (tmp_path / "hub.log").read_text()
                time.sleep(0.1)
            _in_ns(ns, sys.executable, "-m", "zosnode", "hub", "push", "--hub", HUB,
                   "--key", str(kit.publisher_key), "--store", str(kit.store),
                   "--root", str(kit.root), "--manifest", str(kit.manifest(1)))
            # The hub first serves a manifest signed by a key the node does not trust.
            channel = hub_data / "channels" / demo_os.CHANNEL / "manifest"
            honest = channel.read_bytes()
            stranger = kit.work / "stranger.key"
            demo_os.zosnode("keys", "generate", "-o", stranger)
            toml = kit.work.joinpath("release-1.toml").read_text().replace(
                "version = 1", "version = 7")
            channel.write_bytes(demo_os.sign_release(kit, toml, 7, key=stranger).read_bytes())

            with dnsmasq(ns, server / "dnsmasq.conf", tmp_path / "dnsmasq.log"), \
                    http_server(ns, LAB_IP, 8000, tmp_path / "www", tmp_path / "http.log"):
                console = tmp_path / "console.log"
                argv = (qemu.base_argv(console, memory_mb=1024) + qemu.tap_nic_argv("zt0")
                        + ["-boot", "n"])
                with qemu.vm(qemu.nsexec_argv(ns, argv), console, deadline_s=600) as vm:
                    # The console says why: no valid signature from a trusted key.
                    refused, _ = vm.wait_for(r"manifest refused: [^\n]*", BOOT_S)
                    assert re.search(r"signature|unknown key", refused.group(0)), \
                        refused.group(0)
                    channel.write_bytes(honest)  # a good manifest is published
                    ready, seconds = vm.wait_for(READY, 120, start=refused.end())
                    assert ready.group(1) == "1"
                    node_id = ready.group(2)
                    node = _wait_listed(ns, node_id, 1)
                    assert node["farm"] == "lab"
                    address = _vm_address(tmp_path / "dnsmasq.log")
                    _assert_nothing_listens(ns, address)
                    _in_ns(ns, sys.executable, "-m", "zosnode", "hub", "push", "--hub", HUB,
                           "--key", str(kit.publisher_key), "--store", str(kit.store),
                           "--manifest", str(kit.manifest(2)))
                    vm.wait_for(r"zosnode: ready 2 " + node_id, POLL_S, start=ready.end())
                    _wait_listed(ns, node_id, 2)
        finally:
            hub.terminate()
            hub.wait(timeout=15)
            hub_log.close()
    print(f"QEMU start to ready: {seconds:.1f} s")


def _vm_address(dnsmasq_log: Path) -> str:
    leases = re.findall(r"DHCPACK\(\w+\) (10\.99\.0\.\d+) ", dnsmasq_log.read_text())
    assert leases, dnsmasq_log.read_text()[-2000:]
    return leases[-1]


def _assert_nothing_listens(ns: str, address: str) -> None:
    """A full TCP connect scan and a UDP probe from the boot network."""
    out = run(nsexec(ns, sys.executable, str(TOP / "tests/net/portscan.py"), address,
                     "--udp", "22,53,67,68,69,123,161,5353", "--window", "1.0")).stdout
    result = json.loads(out)
    assert result["tcp"]["accepted"] == [], result
    assert result["udp"]["answered"] == [], result
