"""The whole story in a VM: netboot, a refused manifest, ready, heartbeat, no
listener, upgrade. One boot carries every check (booting is the slow part).

The VM netboots through its firmware iPXE (dnsmasq: DHCP, RA, TFTP) with
kernel and initramfs from a static server, runs `zosnode node run` as PID 1
with the demo OS's trust anchor compiled into the artifact, and talks to the
real hub in the same namespace. On any timeout the console log is attached.
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
from tests.boot.conftest import TOP, BootFiles
from tests.lab import qemu
from tests.lab.bootlab import BOOT, HUB, TAP, BootLab, boot_lab
from tests.lab.netns import nsexec, run

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("root_lab")]
READY = r"zosnode: ready (\d+) ([0-9a-f]{64})"
BOOT_S = 180  # QEMU start to the first manifest, software emulation on shared cores
POLL_S = 30 + 5 + 30  # the agent's default poll interval and jitter, plus a release's start


def _wait_listed(lab: BootLab, node_id: str, release: int) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while True:
        for n in lab.hub_json("/api/v1/nodes")["nodes"]:
            if n["node_id"] == node_id and n["release"] == release:
                return dict(n)
        assert time.monotonic() < deadline, f"the hub never listed {node_id} at {release}"
        time.sleep(0.5)


def test_vm_netboots_to_ready_refuses_a_stranger_and_upgrades(
        tmp_path: Path, demo_kit: demo_os.Kit, boot_files: BootFiles) -> None:
    kit = demo_kit  # its anchor is compiled into boot_files' artifact
    www = tmp_path / "lab" / "www" / "boot" / demo_os.CHANNEL
    www.mkdir(parents=True)
    (www / "vmlinuz").symlink_to(boot_files.kernel)
    (www / "initramfs.img").symlink_to(boot_files.initramfs)

    with boot_lab(tmp_path / "lab", "lab", demo_os.CHANNEL, "--hub", HUB, "--boot-url", BOOT,
                  "--kernel-arg", "quiet") as lab:
        lab.start_hub(kit.publisher_id)
        lab.push(kit.publisher_key, kit.store, kit.manifest(1), root=kit.root)
        # The hub first serves a manifest signed by a key the node does not trust.
        channel = lab.hub_data / "channels" / demo_os.CHANNEL / "manifest"
        honest = channel.read_bytes()
        channel.write_bytes(demo_os.stranger_release(kit, tmp_path / "stranger.key", 7))

        console = tmp_path / "console.log"
        argv = qemu.base_argv(console, memory_mb=1024) + qemu.tap_nic_argv(TAP) + ["-boot", "n"]
        with qemu.vm(qemu.nsexec_argv(lab.ns, argv), console, deadline_s=600) as vm:
            # The console says why: no valid signature from a trusted key.
            refused, _ = vm.wait_for(r"manifest refused: [^\n]*", BOOT_S)
            assert re.search(r"signature|unknown key", refused.group(0)), refused.group(0)
            channel.write_bytes(honest)  # a good manifest is published; the node retries
            ready, seconds = vm.wait_for(READY, 120, start=refused.end())
            assert ready.group(1) == "1"
            node_id = ready.group(2)
            assert _wait_listed(lab, node_id, 1)["farm"] == "lab"  # its heartbeat arrived
            _assert_nothing_listens(lab.ns, _vm_address(tmp_path / "lab" / "dnsmasq.log"))
            lab.push(kit.publisher_key, kit.store, kit.manifest(2))
            vm.wait_for(r"zosnode: ready 2 " + node_id, POLL_S, start=ready.end())
            _wait_listed(lab, node_id, 2)

        # The same VM (same NIC, so the same node id) from the generated ISO.
        iso = tmp_path / "boot.iso"
        proc = subprocess.run(
            [sys.executable, "-m", "zosnode", "bootstrap", "iso", "--no-efi", "--farm", "lab",
             "--channel", demo_os.CHANNEL, "--hub", HUB, "--boot-url", BOOT,
             "--kernel-arg", "quiet", "-o", str(iso)],
            capture_output=True, text=True, cwd=TOP, timeout=120)
        assert proc.returncode == 0, proc.stderr
        console = tmp_path / "console-iso.log"
        argv = (qemu.base_argv(console, memory_mb=1024) + qemu.tap_nic_argv(TAP)
                + ["-cdrom", str(iso), "-boot", "d"])
        with qemu.vm(qemu.nsexec_argv(lab.ns, argv), console, deadline_s=300) as vm:
            vm.wait_for(r"zosnode: farm lab channel", BOOT_S)
            vm.wait_for(r"zosnode: ready 2 [0-9a-f]{64}", BOOT_S)
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
