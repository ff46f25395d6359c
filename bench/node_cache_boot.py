#!/usr/bin/env python3
"""QEMU start to ready with a cache disk: the first boot of a release vs the second.

Each run: a fresh sparse 64 MiB ext4 labelled ZOSCACHE as the VM's virtio
disk, `zos.cache=auto`, direct kernel boot of the initramfs built from this
tree (the demo OS's anchor inside), the real hub in a lab namespace, no TPM.
Boot 1 fills the cache, boot 2 boots the same release from it, with the
flists served through FUSE (lazily: only the blocks the services read) and
extracted (every block of the 4 MiB image). For each boot:
seconds from QEMU start to `zosnode: ready` (host wall clock, console polled),
and what the hub served meanwhile, from its /metrics: block GETs and their
bytes, and all bytes on every route (manifest, roots, flists, heartbeats)
but /metrics.
The counters are read once nothing was fetched for 6 s (the mount's
prefetch done). Medians over runs.

Usage: python3 bench/node_cache_boot.py [--runs 2] [--mounts fuse,extract]
(root; QEMU, dnsmasq, mkfs.ext4)
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP))

from examples import demo_os  # noqa: E402
from tests.boot.conftest import build_initramfs, build_zipapp  # noqa: E402
from tests.boot.test_cache_disk import (  # noqa: E402
    BOOT_S,
    MIB,
    READY,
    make_ext4,
    settled_blocks,
)
from tests.lab import qemu  # noqa: E402
from tests.lab.bootlab import HUB, TAP, BootLab, boot_lab  # noqa: E402
from zosnode.bootmedia.ipxe import BootConfig, kernel_cmdline  # noqa: E402


def all_bytes(lab: BootLab) -> int:
    """Response bytes on every route but /metrics (this script's own polling)."""
    return sum(int(m.group(2)) for m in re.finditer(
        r'zos_hub_bytes_served_total\{route="([^"]*)"\} (\d+)', lab.hub_get("/metrics"))
        if m.group(1) != "/metrics")


def one_boot(lab: BootLab, work: Path, name: str, disk: Path, kernel: Path, initrd: Path,
             mounts: str) -> tuple[float, int, int, int]:
    before, total = settled_blocks(lab, quiet_s=1), all_bytes(lab)
    console = work / f"console-{name}.log"
    argv = (qemu.base_argv(console, memory_mb=1024) + qemu.tap_nic_argv(TAP)
            + qemu.disk_argv(disk)
            + qemu.direct_boot_argv(kernel, initrd, kernel_cmdline(BootConfig(
                farm="lab", channel=demo_os.CHANNEL, hubs=(HUB,), console=("ttyS0,115200",),
                extra_args=("quiet", "zos.cache=auto"),
                init_args=("node", "run", "--mounts", mounts)))))
    with qemu.vm(qemu.nsexec_argv(lab.ns, argv), console, 400) as vm:
        _, seconds = vm.wait_for(READY, BOOT_S)
        after = settled_blocks(lab)
    return seconds, after[0] - before[0], after[1] - before[1], all_bytes(lab) - total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--mounts", default="fuse,extract")
    args = ap.parse_args()
    modes = args.mounts.split(",")
    rows: dict[tuple[str, str], list[tuple[float, int, int, int]]] = {
        (m, w): [] for m in modes for w in ("first", "second")}
    with tempfile.TemporaryDirectory(prefix="zosnode-bench-cache-") as tmp:
        work = Path(tmp)
        kit = demo_os.build(work / "kit")
        app = build_zipapp(work, kit.anchor)
        proc = build_initramfs(app, work / "boot")
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        kernel, initrd = work / "boot" / "vmlinuz", work / "boot" / "initramfs.img"
        with boot_lab(work / "lab", "lab", demo_os.CHANNEL, "--hub", HUB) as lab:
            lab.start_hub(kit.publisher_id)
            lab.push(kit.publisher_key, kit.store, kit.manifest(1), root=kit.root)
            for i in range(args.runs):
                for mode in modes:
                    disk = make_ext4(work / f"cache-{mode}-{i}.img", 64 * MIB)
                    for which in ("first", "second"):
                        row = one_boot(lab, work, f"{mode}-{which}-{i}", disk, kernel, initrd,
                                       mode)
                        rows[(mode, which)].append(row)
                        print(f"run {i + 1} {mode} {which} boot: ready {row[0]:.1f} s, "
                              f"{row[1]} blocks ({row[2]} bytes), {row[3]} bytes from the hub "
                              "in all", flush=True)
    print(f"\nmedians of {args.runs} runs")
    print("| mounts | boot | QEMU start to ready | blocks fetched | block bytes "
          "| all hub bytes |")
    print("|---|---|---:|---:|---:|---:|")
    for (mode, which), runs in rows.items():
        med = [statistics.median(r[k] for r in runs) for k in range(4)]
        print(f"| {mode} | {which} | {med[0]:.1f} s | {med[1]:.0f} | {med[2]:,.0f} "
              f"| {med[3]:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
