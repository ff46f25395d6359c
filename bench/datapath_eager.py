#!/usr/bin/env python3
"""Eager fetch of the Debian minbase image from a loopback mirror, in MB/s, against
`casync extract` of the same tree from an HTTP chunk store, and `curl` of a tarball
of the same tree (the near-physical limit). One nginx serves all three.

MB/s is the tree's regular-file bytes over wall time (process start to exit),
every destination on tmpfs. zosnode runs its CLI: `flist extract ID DIR --hub URL`.

Usage: python3 bench/datapath_eager.py [--runs 3]   (root: debootstrap, owners)
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

from tests.lab.nginx import nginx  # noqa: E402
from tests.lab.rootfs import rootfs_tarball, unpack_rootfs  # noqa: E402
from zosnode.flist.pack import build  # noqa: E402
from zosnode.flist.source_dir import tree_from_dir  # noqa: E402
from zosnode.flist.store import LocalStore  # noqa: E402
from zosnode.flist.writer import encode  # noqa: E402


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=TOP)
    return time.perf_counter() - t0


def file_bytes(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            if os.path.isfile(p) and not os.path.islink(p):
                total += os.lstat(p).st_size
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
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
        subprocess.run(["casync", "make", f"--store={www / 'castr'}", str(www / "tree.caidx"),
                        str(src)], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["tar", "--numeric-owner", "--xattrs", "-cf", str(www / "tree.tar"),
                        "-C", str(src), "."], check=True)
        zos, cas, curl = [], [], []
        with nginx(www, work / "nginx") as server:
            for i in range(args.runs):
                dest = shm / f"z{i}"
                zos.append(timed([sys.executable, "-m", "zosnode", "flist", "extract", fid,
                                  str(dest), "--hub", f"{server.url}/data"]))
                shutil.rmtree(dest)
                dest = shm / f"c{i}"
                cas.append(timed(["casync", "extract", f"--store={server.url}/castr",
                                  f"{server.url}/tree.caidx", str(dest)]))
                shutil.rmtree(dest)
                curl.append(timed(["curl", "-sf", "-o", str(shm / "tree.tar"),
                                   f"{server.url}/tree.tar"]))
                (shm / "tree.tar").unlink()
        z, c, u = (statistics.median(x) for x in (zos, cas, curl))
        mb = payload / 1e6
        print(f"Eager fetch of Debian bookworm minbase ({mb:.0f} MB of files, "
              f"{len(flist.entries)} entries), median of {args.runs}, loopback nginx, to tmpfs:")
        print(f"  zosnode flist extract --hub  {z:6.2f} s  {mb / z:7.0f} MB/s")
        print(f"  casync extract (http store)  {c:6.2f} s  {mb / c:7.0f} MB/s"
              f"   zosnode = {c / z:.2f} x casync")
        print(f"  curl of a tarball            {u:6.2f} s  {mb / u:7.0f} MB/s"
              f"   zosnode = {u / z:.3f} x curl")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
