#!/usr/bin/env python3
"""initramfs compression: size against the kernel's unpack time, in QEMU.

Builds the node initramfs once, compresses the same cpio with each method
the builder offers, and boots each (kernel + initrd directly, `-- version`)
several times, interleaved. The unpack time is the kernel's own printk
stamps from "Trying to unpack rootfs" to "Freeing initrd memory"; the boot
time is QEMU start to the artifact's version line. `none` is the peer;
`zstd` is the builder's (compression.ZSTD_ARGS), `zstd-long` level 22 with
a 64 MB window that holds the whole cpio.

Usage: python3 bench/boot_compression.py [--runs 3] [--methods none,zstd,zstd-long]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP))

from tests.boot.conftest import build_zipapp  # noqa: E402
from tests.lab import qemu  # noqa: E402
from zosnode.bootmedia import compression, initramfs  # noqa: E402

VARIANTS: dict[str, Callable[[bytes], bytes]] = {
    "none": lambda raw: raw,
    "gzip": lambda raw: compression.compress(raw, "gzip"),
    "xz": lambda raw: compression.compress(raw, "xz"),
    "zstd": lambda raw: compression.compress(raw, "zstd"),
    "zstd-long": lambda raw: compression.zstd(raw, ("--ultra", "-22", "--long=26")),
}
STAMP = r"\[\s*(\d+\.\d+)\]"


def boot_once(kernel: Path, image: Path, work: Path) -> tuple[float, float]:
    console = work / "console.log"
    argv = qemu.base_argv(console) + qemu.direct_boot_argv(
        kernel, image, "console=ttyS0 panic=-1 -- version")
    with qemu.vm(argv, console, deadline_s=120) as vm:
        _, seconds = vm.wait_for(r"zosnode \d+\.\d+\.\d+ \(", 120)
        text = vm.text()
    start = re.search(STAMP + r" Trying to unpack rootfs", text)
    end = re.search(STAMP + r" Freeing initrd memory", text)
    if not (start and end):
        raise SystemExit("no unpack stamps on the console:\n" + text[-3000:])
    return float(end.group(1)) - float(start.group(1)), seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--methods", default=",".join(VARIANTS),
                    help=f"comma-separated, of {', '.join(VARIANTS)}")
    args = ap.parse_args()
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in VARIANTS]
    if unknown:
        ap.error(f"unknown method {unknown[0]!r}")
    with tempfile.TemporaryDirectory(prefix="zosnode-bench-boot-") as tmp:
        work = Path(tmp)
        zipapp = build_zipapp(work)
        result = initramfs.build(initramfs.Inputs(
            lock=TOP / "initramfs/packages.lock", modules_list=TOP / "initramfs/modules.list",
            zipapp=zipapp, cache=TOP / "work/cache", compression="none"))
        kernel = work / "vmlinuz"
        kernel.write_bytes(result.kernel)
        raw = result.image
        images: dict[str, Path] = {}
        sizes: dict[str, int] = {}
        build_s: dict[str, float] = {}
        for m in methods:
            t0 = time.perf_counter()
            data = VARIANTS[m](raw)
            build_s[m] = time.perf_counter() - t0
            images[m] = work / f"initramfs.{m}"
            images[m].write_bytes(data)
            sizes[m] = len(data)
        unpack: dict[str, list[float]] = {m: [] for m in methods}
        boot: dict[str, list[float]] = {m: [] for m in methods}
        for _ in range(args.runs):
            for m in methods:  # interleaved: machine noise hits every method alike
                u, b = boot_once(kernel, images[m], work)
                unpack[m].append(u)
                boot[m].append(b)
    print(f"unpacked cpio: {len(raw)} bytes; {args.runs} boots each (median)")
    print(f"{'method':<8} {'size':>10} {'ratio':>6} {'compress s':>10} {'unpack s':>9} "
          f"{'to /init s':>10}")
    for m in methods:
        print(f"{m:<8} {sizes[m]:>10} {sizes[m] / len(raw):>6.3f} {build_s[m]:>10.1f} "
              f"{statistics.median(unpack[m]):>9.3f} {statistics.median(boot[m]):>10.2f}")
    print(f"default: {compression.DEFAULT} ({' '.join(compression.ZSTD_ARGS)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
