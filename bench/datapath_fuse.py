#!/usr/bin/env python3
"""FUSE reads: a 512 MiB file cold (through nginx) and warm (block cache) vs tmpfs;
and starting a Python interpreter from a mounted image, cold, with and without
the boot-order prefetch hint.

All served from nginx on 127.0.0.1; every figure comes from the same run.
The kernel's page cache is out of the picture: each timing uses a fresh mount
(a new superblock), so "warm" means "from zosnode's block cache".

The interpreter start is also timed against a mirror that adds --rtt-ms to
every request (a network's round trip, simulated on loopback).

Usage: python3 bench/datapath_fuse.py [--size-mib 512] [--runs 3] [--rtt-ms 20]   (root)
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

import trio

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP))

from tests.lab.faulty_mirror import FaultyMirror  # noqa: E402
from tests.lab.nginx import nginx  # noqa: E402
from zosnode.cache.store import BlockCache  # noqa: E402
from zosnode.cli.flist_remote import mounted  # noqa: E402
from zosnode.fetch.fetcher import Fetcher  # noqa: E402
from zosnode.flist.blocks import Compression  # noqa: E402
from zosnode.flist.format import decode  # noqa: E402
from zosnode.flist.pack import BuildOptions, build  # noqa: E402
from zosnode.flist.source_dir import tree_from_dir  # noqa: E402
from zosnode.flist.store import LocalStore  # noqa: E402
from zosnode.flist.writer import encode, with_hint  # noqa: E402

PY = "/usr/bin/python3.11"


def make_flist(src: Path, data: Path, options: BuildOptions | None = None) -> bytes:
    store = LocalStore(data)
    store.init()
    flist, _ = build(tree_from_dir(src), lambda eb: store.put_block(eb.stored)[1], options)
    raw = encode(flist)
    store.put_flist(raw)
    return raw


def python_tree(root: Path) -> Path:
    """The interpreter, its shared libraries and the standard library."""
    libs = subprocess.run(["ldd", PY], capture_output=True, text=True, check=True).stdout
    paths = [PY] + [w for w in libs.split() if w.startswith("/")]
    for p in paths:
        dst = root / p.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(p), dst)
    shutil.copytree("/usr/lib/python3.11", root / "usr/lib/python3.11", symlinks=True,
                    ignore=shutil.ignore_patterns("test", "__pycache__", "dist-packages"))
    return root


async def timed_dd(path: Path) -> float:
    t0 = time.perf_counter()
    await trio.run_process(["dd", f"if={path}", "of=/dev/null", "bs=1M"],
                           capture_stderr=True)
    return time.perf_counter() - t0


async def fuse_read(work: Path, url: str, raw: bytes, cache_dir: Path, name: str) -> float:
    mnt = Path(tempfile.mkdtemp(dir=work))
    async with mounted(raw, mnt, Fetcher([url]), BlockCache(cache_dir, 4 << 30)):
        return await timed_dd(mnt / name)


async def python_start(work: Path, url: str, raw: bytes, prefetch: bool) -> float:
    mnt = Path(tempfile.mkdtemp(dir=work))
    cache = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        t0 = time.perf_counter()
        async with mounted(raw, mnt, Fetcher([url]), BlockCache(cache, 1 << 30),
                           prefetch=prefetch):
            await trio.run_process(["chroot", str(mnt), PY, "-c", "import json, asyncio"])
            return time.perf_counter() - t0
    finally:
        shutil.rmtree(cache)


async def run(args: argparse.Namespace, work: Path) -> None:
    size = args.size_mib << 20
    src = work / "big"
    src.mkdir()
    with open(src / "file", "wb") as f:
        for _ in range(args.size_mib):
            f.write(os.urandom(1 << 20))
    shm = Path(tempfile.mkdtemp(dir="/dev/shm"))
    shutil.copy(src / "file", shm / "file")
    data = work / "data"
    raw_big = make_flist(src, data, BuildOptions(compression=Compression.NONE))
    pysrc = python_tree(work / "py")
    raw_py = make_flist(pysrc, data)

    with nginx(data, work / "nginx") as server:
        # Record the hint: run the interpreter once and keep the block order.
        mnt = Path(tempfile.mkdtemp(dir=work))
        rec_cache = Path(tempfile.mkdtemp(dir="/dev/shm"))
        async with mounted(raw_py, mnt, Fetcher([server.url]), BlockCache(rec_cache, 1 << 30),
                           prefetch=False) as m:
            await trio.run_process(["chroot", str(mnt), PY, "-c", "import json, asyncio"])
            order = list(m.source.first_use)
        shutil.rmtree(rec_cache)
        raw_hint = with_hint(decode(raw_py), order)
        LocalStore(data).put_flist(raw_hint)

        tmpfs, cold, warm, py_plain, py_hint = [], [], [], [], []
        for _ in range(args.runs):
            cache = Path(tempfile.mkdtemp(dir="/dev/shm"))
            tmpfs.append(await timed_dd(shm / "file"))
            cold.append(await fuse_read(work, server.url, raw_big, cache, "file"))
            warm.append(await fuse_read(work, server.url, raw_big, cache, "file"))
            shutil.rmtree(cache)
            py_plain.append(await python_start(work, server.url, raw_py, prefetch=False))
            py_hint.append(await python_start(work, server.url, raw_hint, prefetch=True))
    # The same over a mirror that adds a round trip to every request.
    lat_plain, lat_hint = [], []
    async with trio.open_nursery() as nursery:
        slow = FaultyMirror(data, latency_s=args.rtt_ms / 1000)
        await slow.start(nursery)
        for _ in range(args.runs):
            lat_plain.append(await python_start(work, slow.url, raw_py, prefetch=False))
            lat_hint.append(await python_start(work, slow.url, raw_hint, prefetch=True))
        nursery.cancel_scope.cancel()
    shutil.rmtree(shm)

    def mbs(times: list[float]) -> float:
        return size / statistics.median(times) / 1e6

    t, c, w = mbs(tmpfs), mbs(cold), mbs(warm)
    print(f"FUSE sequential read of {args.size_mib} MiB (median of {args.runs}, dd bs=1M):")
    print(f"  tmpfs                {t:8.0f} MB/s")
    print(f"  mount, cold (nginx)  {c:8.0f} MB/s   {c / t:.3f} x tmpfs")
    print(f"  mount, warm (cache)  {w:8.0f} MB/s   {w / t:.3f} x tmpfs")
    pp, ph = statistics.median(py_plain), statistics.median(py_hint)
    print(f"Python start from a cold mount ({len(order)} blocks read; mount to exit):")
    print(f"  no hint              {pp * 1000:8.0f} ms")
    print(f"  prefetch hint        {ph * 1000:8.0f} ms   {ph / pp:.3f} x no hint")
    lp, lh = statistics.median(lat_plain), statistics.median(lat_hint)
    print(f"  same, {args.rtt_ms} ms added per request (in-process mirror):")
    print(f"  no hint              {lp * 1000:8.0f} ms")
    print(f"  prefetch hint        {lh * 1000:8.0f} ms   {lh / lp:.3f} x no hint")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rtt-ms", type=int, default=20)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (FUSE mounts, chroot)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="zosnode-bench-fuse-"))
    try:
        trio.run(run, args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
