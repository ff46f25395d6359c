#!/usr/bin/env python3
"""Decoding an flist (what every mount, extract, `ls` and boot does first), against cbor2.

The flist of the Debian minbase tree (built with the builder's defaults) is
decoded into its checked view, `FlistView.from_bytes`, as `flist extract` and
`flist mount` do (the collector off), in a fresh interpreter per tree; the peer
is cbor2's C decoder on the same bytes in the same process (structure only: no
limits, no canonical-form check, no entries built). Then the command a user
runs on it, `zosnode flist inspect FILE`, a process of its own, wall time.

Usage: python3 bench/flist_decode.py [--runs 7] [--tree DIR]   (root: debootstrap)
  --tree: also decode with another checkout's code (an A/B in one run)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP))

from tests.lab.rootfs import rootfs_tarball, unpack_rootfs  # noqa: E402
from zosnode.flist.pack import build  # noqa: E402
from zosnode.flist.source_dir import tree_from_dir  # noqa: E402
from zosnode.flist.writer import encode  # noqa: E402

# Run by each tree's interpreter: median ms of its decode and of cbor2's, over `runs`.
PROBE = r"""
import gc, statistics, sys, time
sys.path.insert(0, sys.argv[1])
import cbor2
from zosnode.flist.view import FlistView
data, runs = open(sys.argv[2], "rb").read(), int(sys.argv[3])
ours, peer = [], []
for _ in range(runs):
    gc.disable()
    t0 = time.perf_counter()
    view = FlistView.from_bytes(data)
    t1 = time.perf_counter()
    cbor2.loads(data)
    t2 = time.perf_counter()
    gc.enable()
    gc.collect()
    ours.append(t1 - t0)
    peer.append(t2 - t1)
print(len(view.entries), statistics.median(ours) * 1e3, statistics.median(peer) * 1e3)
"""


def decode(tree: Path, flist: Path, runs: int) -> tuple[int, float, float]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(tree), str(flist), str(runs)],
                         check=True, capture_output=True, text=True, cwd=tree).stdout.split()
    return int(out[0]), float(out[1]), float(out[2])


def inspect_s(flist: Path, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "zosnode", "flist", "inspect", str(flist)],
                       check=True, stdout=subprocess.DEVNULL, cwd=TOP)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--tree", type=Path, help="another checkout to decode with too")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (debootstrap)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="zosnode-bench-decode-") as tmp:
        src = unpack_rootfs(rootfs_tarball(), Path(tmp, "src"))
        flist, _ = build(tree_from_dir(src), lambda eb: eb.id)
        path = Path(tmp, "minbase.flist")
        path.write_bytes(encode(flist))
        size = path.stat().st_size
        trees = [TOP] + ([args.tree.resolve()] if args.tree else [])
        results = [(tree, *decode(tree, path, args.runs)) for tree in trees]
        command = inspect_s(path, max(3, args.runs // 2))
    print(f"Decoding the Debian minbase flist ({size:,} bytes), median of {args.runs},"
          " a fresh interpreter per tree:")
    for tree, entries, ours, peer in results:
        name = "this tree" if tree == TOP else str(tree)
        print(f"  {name}: FlistView.from_bytes {ours:6.1f} ms ({entries} entries,"
              f" {ours * 1e3 / entries:.1f} us each); cbor2.loads (C, structure only)"
              f" {peer:5.1f} ms: {ours / peer:.1f}x cbor2")
    print(f"  zosnode flist inspect FILE (its own process): {command * 1e3:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
