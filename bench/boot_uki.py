#!/usr/bin/env python3
"""The signed UKI path against the kernel + initramfs path: size, and QEMU start to ready.

Same run, same lab (a namespace with dnsmasq, a static server and the real
hub with the demo OS), same initramfs, `quiet` on every command line, runs
alternating:

- kernel+initrd: SeaBIOS, its iPXE, the script, kernel and initramfs over
  HTTP (today's path, unverified);
- UKI netboot: OVMF with Secure Boot and our keys, PXE, a db-signed iPXE, the
  script's EFI branch, zosnode.cred and the signed UKI over HTTP;
- UKI EFI image: OVMF with Secure Boot, the UKI from the EFI image (no network
  until the agent's own DHCP).

Usage (root): python3 bench/boot_uki.py [--runs 1]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP))

from bench.boot_phases import build_zipapp  # noqa: E402
from examples import demo_os  # noqa: E402
from tests.boot.conftest import build_initramfs  # noqa: E402
from tests.lab import ovmf, qemu  # noqa: E402
from tests.lab.bootlab import BOOT, HUB, TAP, boot_lab  # noqa: E402
from zosnode.bootmedia import uki  # noqa: E402

READY = r"zosnode: ready 1 "


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="zosnode-bench-uki-") as tmp:
        work = Path(tmp)
        kit = demo_os.build(work / "kit")
        app = build_zipapp(TOP, work / "node.pyz", kit.anchor)
        boot = work / "lab" / "www" / "boot" / demo_os.CHANNEL
        proc = build_initramfs(app, boot)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        sb = ovmf.make_kit(work / "sb", boot / "vmlinuz", boot / "initramfs.img",
                           uki.UkiConfig(extra_args=("quiet",)))
        (boot / "zosnode.efi").symlink_to(sb.uki)
        image = work / "esp.img"
        subprocess.run([sys.executable, "-m", "zosnode", "bootstrap", "efi", "--uki", str(sb.uki),
                        "--farm", "bench", "--channel", demo_os.CHANNEL, "--hub", HUB,
                        "-o", str(image)], check=True, capture_output=True, cwd=TOP)
        sizes = {"vmlinuz": (boot / "vmlinuz").stat().st_size,
                 "initramfs": (boot / "initramfs.img").stat().st_size,
                 "uki unsigned": sb.uki_unsigned.stat().st_size,
                 "uki signed": sb.uki.stat().st_size, "EFI image": image.stat().st_size}
        paths: dict[str, Callable[[Path], list[str]]] = {
            "kernel+initrd (BIOS iPXE)": lambda c: qemu.base_argv(c, 1024)
            + qemu.tap_nic_argv(TAP) + ["-boot", "n"],
            "UKI netboot (OVMF SB)": lambda c: qemu.base_argv(c, 1024) + ovmf.nic_argv(TAP)
            + ovmf.firmware_argv(sb.vars_copy(work / "vars.fd")) + ["-boot", "n"],
            "UKI EFI image (OVMF SB)": lambda c: qemu.base_argv(c, 1024) + ovmf.nic_argv(TAP)
            + ovmf.firmware_argv(sb.vars_copy(work / "vars.fd")) + ovmf.disk_argv(image),
        }
        times: dict[str, list[float]] = {name: [] for name in paths}
        kernel_at: dict[str, list[float]] = {name: [] for name in paths}
        script_at: dict[str, list[float]] = {name: [] for name in paths}
        with boot_lab(work / "lab", "bench", demo_os.CHANNEL, "--hub", HUB, "--boot-url", BOOT,
                      "--kernel-arg", "quiet", "--uki", "--efi-loader", str(sb.ipxe)) as lab:
            lab.start_hub(kit.publisher_id)
            lab.push(kit.publisher_key, kit.store, kit.manifest(1), root=kit.root)
            for i in range(args.runs):
                for name, argv in paths.items():
                    console = work / f"console-{i}-{len(times[name])}-{name[:3]}.log"
                    with qemu.vm(qemu.nsexec_argv(lab.ns, argv(console)), console, 420) as vm:
                        if "netboot" in name or "iPXE" in name:  # the script has started
                            _, at = vm.wait_for(r"zosnode: farm bench channel", 300)
                            script_at[name].append(at)
                        _, at = vm.wait_for(r"zosnode: mounted proc", 300)
                        kernel_at[name].append(at)
                        _, ready = vm.wait_for(READY, 300)
                        times[name].append(ready)
    print("sizes: " + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sizes.items()))
    print(f"{args.runs} run(s) each, medians, QEMU start to:")
    for name in paths:
        script = (f"script {statistics.median(script_at[name]):5.1f} s   " if script_at[name]
                  else " " * 17)
        print(f"  {name:<28} {script}/init {statistics.median(kernel_at[name]):6.1f} s   "
              f"ready {statistics.median(times[name]):6.1f} s   "
              f"(runs: {', '.join(f'{t:.1f}' for t in times[name])})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
