"""The farmer's flow end to end: in Chromium, choose a farm and the ISO on the
hub's boot media page, download it, boot that ISO in QEMU, and see the node
on the fleet page as ready with that farm within one heartbeat.

The lab is tests/lab/bootlab.py's (namespace, bridge, tap, dnsmasq for DHCP)
with the real hub in it serving the demo OS release and the channel's kernel
and initramfs under boot/; the browser runs in the namespace too
(tests/web/browse_in_ns.py), as the ISO points at the hub as the browser
reached it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from examples import demo_os
from tests.boot.conftest import BootFiles, boot_files, demo_kit, node_zipapp, root_lab
from tests.lab import qemu
from tests.lab.bootlab import HUB, TAP, boot_lab
from tests.lab.webdriver import require_chromium

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("root_lab")]
__all__ = ["boot_files", "demo_kit", "node_zipapp", "root_lab"]  # fixtures, imported
READY = r"zosnode: ready (\d+) ([0-9a-f]{64})"
BOOT_S = 240  # QEMU start to ready, software emulation on shared cores
HEARTBEAT_S = 60  # the agent's heartbeat interval (one heartbeat)
FARM = "farm-web-7"


def test_browser_iso_boots_and_the_node_appears_ready_on_the_fleet_page(
        tmp_path: Path, demo_kit: demo_os.Kit, boot_files: BootFiles) -> None:
    require_chromium()
    kit = demo_kit
    with boot_lab(tmp_path / "lab", "lab", demo_os.CHANNEL, "--hub", HUB) as lab:
        boot = lab.hub_data / "boot" / demo_os.CHANNEL
        boot.mkdir(parents=True)
        (boot / "vmlinuz").symlink_to(boot_files.kernel)
        (boot / "initramfs.img").symlink_to(boot_files.initramfs)
        lab.start_hub(kit.publisher_id)
        lab.push(kit.publisher_key, kit.store, kit.manifest(1), root=kit.root)
        downloads = tmp_path / "downloads"
        downloads.mkdir()
        got = json.loads(lab.in_ns(sys.executable, "tests/web/browse_in_ns.py", "download",
                                   HUB, FARM, str(downloads), timeout=300))
        assert f"zos.farm={FARM}" in got["cmdline"] and "quiet" in got["cmdline"]
        iso = Path(got["iso"])
        console = tmp_path / "console.log"
        argv = (qemu.base_argv(console, memory_mb=1024) + qemu.tap_nic_argv(TAP)
                + ["-cdrom", str(iso), "-boot", "d"])
        started = time.monotonic()
        with qemu.vm(qemu.nsexec_argv(lab.ns, argv), console, deadline_s=600) as vm:
            vm.wait_for(rf"zosnode: farm {FARM} channel", BOOT_S)
            ready, _ = vm.wait_for(READY, BOOT_S)
            at_ready = time.monotonic()
            node_id = ready.group(2)
            seen = json.loads(lab.in_ns(sys.executable, "tests/web/browse_in_ns.py", "fleet",
                                        HUB, FARM, str(HEARTBEAT_S), timeout=HEARTBEAT_S + 60))
            assert seen["ready"], seen
            row = seen["row"]
            assert node_id.startswith(row[0]) and FARM in row and "ready" in row, row
            print(f"ISO boot to ready {at_ready - started:.1f} s; on the fleet page "
                  f"{time.monotonic() - at_ready:.1f} s after ready")
