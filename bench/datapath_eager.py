#!/usr/bin/env python3
"""Eager extract of the Debian minbase image from a loopback nginx, against
`curl | zstd -d | tar -x` of the same tree as a .tar.zst from the same nginx
(the target is 0.7 x that), and `casync extract` from an HTTP chunk store.

MB/s is the tree's regular-file bytes over wall time (process start to exit),
every destination on tmpfs, the flist built with the builder's defaults.
zosnode runs its CLI: `zosnode flist extract ID DIR --hub URL` (no cache: the
blocks go from the network to the writer; `--cache` would also keep them).

Usage: python3 bench/datapath_eager.py [--runs 3] [--no-casync]   (root: debootstrap, owners)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP))

import _host  # noqa: E402  (bench/, beside this script)

from tests.lab.nginx import nginx  # noqa: E402
from tests.lab.rootfs import rootfs_tarball, unpack_rootfs  # noqa: E402
from zosnode.flist.pack import build  # noqa: E402
from zosnode.flist.source_dir import tree_from_dir  # noqa: E402
from zosnode.flist.store import LocalStore  # noqa: E402
from zosnode.flist.writer import encode  # noqa: E402


def timed(argv: list[str], shell: bool = False) -> float:
    t0 = time.perf_counter()
    if shell:
        subprocess.run(["bash", "-o", "pipefail", "-c", " ".join(argv)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=TOP)
    else:
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       cwd=TOP)
    return time.perf_counter() - t0


def file_bytes(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            if os.path.isfile(p) and not os.path.islink(p):
                total += os.lstat(p).st_size
    return total


def _loadavg() -> str:
    # The machine is shared: the ratio is the figure to compare, the load says how far.
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-casync", action="store_true", help="skip casync (slow)")
    _host.add_argument(ap)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    with _host.freed_pages_held(args.hold_freed_pages):
        return run(args.runs, casync=not args.no_casync)


def run(runs: int, *, casync: bool) -> int:
    """The comparison (`datapath_fuse.py --eager` calls this too)."""
    work = Path(tempfile.mkdtemp(prefix="zosnode-bench-eager-"))
    shm = Path(tempfile.mkdtemp(prefix="zosnode-bench-eager-", dir="/dev/shm"))
    try:
        src = unpack_rootfs(rootfs_tarball(), work / "src")
        payload = file_bytes(src)
        www = work / "www"
        store = LocalStore(www / "data")
        store.init()
        flist, _ = build(tree_from_dir(src), lambda eb: store.put_block(eb.stored)[1])
        fid = store.put_flist(encode(flist))
        stored = sum(r.stored_size for r in flist.blocks().values())
        subprocess.run(f"tar --numeric-owner --xattrs -cf - -C {src} . | zstd -q -3 -T0 -o "
                       f"{www / 'tree.tar.zst'}", shell=True, check=True)
        if casync:
            subprocess.run(["casync", "make", "--compression=zstd", f"--store={www / 'castr'}",
                            str(www / "tree.caidx"), str(src)], check=True,
                           stdout=subprocess.DEVNULL)
        zos, tar, cas = [], [], []
        load = [_loadavg()]
        with nginx(www, work / "nginx") as server:
            for i in range(runs):
                dest = shm / f"z{i}"
                zos.append(timed([sys.executable, "-m", "zosnode", "flist", "extract", fid,
                                  str(dest), "--hub", f"{server.url}/data"]))
                shutil.rmtree(dest)
                dest = shm / f"t{i}"
                dest.mkdir()
                tar.append(timed([f"curl -sf {server.url}/tree.tar.zst | zstd -dc |"
                                  f" tar --numeric-owner --xattrs -xf - -C {dest}"], shell=True))
                shutil.rmtree(dest)
                if casync:
                    dest = shm / f"c{i}"
                    cas.append(timed(["casync", "extract", f"--store={server.url}/castr",
                                      f"{server.url}/tree.caidx", str(dest)]))
                    shutil.rmtree(dest)
        load.append(_loadavg())
        z, t = statistics.median(zos), statistics.median(tar)
        mb = payload / 1e6

        def each(xs: list[float]) -> str:
            return "(" + ", ".join(f"{x:.2f}" for x in xs) + " s)"

        print(f"Eager extract of Debian bookworm minbase ({mb:.0f} MB of files, "
              f"{len(flist.entries)} entries, {stored / 1e6:.0f} MB stored in"
              f" {len(flist.blocks())} blocks), median of {runs}, loopback nginx, to tmpfs"
              f" (load average {load[0]} -> {load[1]}):")
        print(f"  zosnode flist extract --hub      {z:6.2f} s  {mb / z:7.0f} MB/s  {each(zos)}")
        print(f"  curl | zstd -d | tar -x          {t:6.2f} s  {mb / t:7.0f} MB/s  {each(tar)}"
              f"   zosnode = {t / z:.2f} x")
        if cas:
            c = statistics.median(cas)
            print(f"  casync extract (http store)      {c:6.2f} s  {mb / c:7.0f} MB/s"
                  f"  {each(cas)}   zosnode = {c / z:.2f} x")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
