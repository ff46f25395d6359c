#!/usr/bin/env python3
"""FUSE reads through the command a node runs, against a trivial pyfuse3 file system.

Every figure comes from one run, on loopback, caches and copies on tmpfs:

* sequential `dd bs=1M` of one SIZE_MIB file of random bytes (stored raw:
  incompressible) from tmpfs; from the trivial file system of
  bench/_fuse_trivial.py (constant buffer, same 1 MiB requests, keep_cache);
  from `zosnode flist mount FLIST MNT --hub URL --cache DIR` (a separate
  process, as on a node) cold (empty cache, blocks from nginx) and warm
  (a fresh mount over the cache the cold run filled), after one cold read
  not counted (on a VM whose balloon reports free pages, the first read's
  fresh pages are host faults: bench/_host.py, bench/datapath.md);
* the same for a tree of shared libraries (compressible, the builder's
  default compression), every file read with dd;
* random 4 KiB reads (pread at aligned random offsets) for a fixed time,
  against tmpfs and a fresh warm mount;
* the mount process's peak RSS (VmHWM) over the cold read of SIZE_MIB;
* each file system process's CPU time per MiB read (steadier than MB/s
  when other work shares the cores).

Each mount is fresh, so the kernel's page cache serves nothing.

With --eager it then runs bench/datapath_eager.py's comparison (Debian
minbase extracted from the hub against `curl | zstd -d | tar -x`), so one
command gives every figure of bench/datapath.md.

Usage: python3 bench/datapath_fuse.py [--size-mib 1024] [--libs-mib 256] [--runs 3] [--eager]
       (root)
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP))

import _host  # noqa: E402  (bench/, beside this script)

from tests.lab.nginx import nginx  # noqa: E402

PY = sys.executable
LIBDIR = Path("/usr/lib/x86_64-linux-gnu")


def zosnode(*args: str) -> list[str]:
    return [PY, "-m", "zosnode", *args]


def build(src: Path, store: Path) -> Path:
    out = store.parent / f"{src.name}.flist"
    subprocess.run(zosnode("flist", "create", str(src), "--store", str(store), "-o", str(out)),
                   check=True, cwd=TOP, stdout=subprocess.DEVNULL)
    return out


def lib_tree(root: Path, limit: int) -> Path:
    """Shared libraries of this machine, up to `limit` bytes, in name order."""
    total = 0
    for dirpath, _, files in sorted(os.walk(LIBDIR)):
        for name in sorted(files):
            p = Path(dirpath) / name
            if ".so" not in name or p.is_symlink() or not p.is_file():
                continue
            dst = root / p.relative_to(LIBDIR)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dst)
            total += dst.stat().st_size
            if total >= limit:
                return root
    return root


@contextmanager
def mount(argv: list[str], mnt: Path, ready: bytes) -> Iterator[subprocess.Popen[bytes]]:
    """A file system process serving `mnt`, once it says `ready`; stopped by SIGINT."""
    proc = subprocess.Popen(argv, cwd=TOP, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        while ready not in (line := proc.stdout.readline()):
            if not line:
                raise RuntimeError(f"{argv[:4]} exited before it was ready")
        yield proc
    finally:
        proc.send_signal(2)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            subprocess.run(["umount", "-l", str(mnt)], check=False)


@contextmanager
def zos_mount(flist: Path, mnt: Path, url: str, cache: Path, cache_mib: int
              ) -> Iterator[subprocess.Popen[bytes]]:
    with mount(zosnode("flist", "mount", str(flist), str(mnt), "--hub", url, "--cache",
                       str(cache), "--cache-size", str(cache_mib), "--no-prefetch"),
               mnt, b"mounted ") as proc:
        yield proc


def dd(paths: list[Path]) -> float:
    t0 = time.perf_counter()
    for p in paths:
        subprocess.run(["dd", f"if={p}", "of=/dev/null", "bs=1M"], check=True,
                       capture_output=True)
    return time.perf_counter() - t0


def files_under(root: Path) -> list[Path]:
    return sorted(Path(d) / f for d, _, fs in os.walk(root) for f in fs)


def random_iops(path: Path, seconds: float) -> float:
    size = path.stat().st_size
    rng = random.Random(1)
    fd = os.open(path, os.O_RDONLY)
    try:
        n = 0
        end = time.perf_counter() + seconds
        t0 = time.perf_counter()
        while True:
            for _ in range(256):
                os.pread(fd, 4096, rng.randrange(size // 4096) * 4096)
            n += 256
            if time.perf_counter() >= end:
                break
        return n / (time.perf_counter() - t0)
    finally:
        os.close(fd)


def cpu_s(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of process `pid` so far (every thread)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(args: argparse.Namespace, work: Path, shm: Path) -> None:
    size = args.size_mib << 20
    big = work / "big"
    big.mkdir()
    with open(big / "file", "wb") as f:
        for _ in range(args.size_mib):
            f.write(os.urandom(1 << 20))
    shutil.copyfile(big / "file", shm / "file")
    libs = lib_tree(shm / "libs", args.libs_mib << 20)
    lib_files = files_under(libs)
    lib_bytes = sum(p.stat().st_size for p in lib_files)
    store = work / "www" / "data"
    big_fl, libs_fl = build(big, store), build(libs, store)
    cache_mib = 2 * args.size_mib + 64
    rows: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        rows.setdefault(name, []).append(value)

    def fresh(tag: str) -> Path:
        mnt = Path(tempfile.mkdtemp(prefix=tag, dir=work))
        return mnt

    def read_file(name: str, proc: subprocess.Popen[bytes], mnt: Path) -> None:
        """dd of `mnt`/file: its MB/s as `name`, `proc`'s CPU per MiB as cpu_`name` (and
        its system share as sys_`name`: the kernel's side, new pages, copies)."""
        u0, s0 = cpu_s(proc.pid)
        add(name, size / dd([mnt / "file"]))
        u1, s1 = cpu_s(proc.pid)
        add(f"cpu_{name}", (u1 - u0 + s1 - s0) / args.size_mib)
        add(f"sys_{name}", (s1 - s0) / args.size_mib)

    with nginx(store, work / "nginx") as server:
        # Not counted: the first cold read touches pages the host took back (free page
        # reporting, bench/_host.py), 2-3x the CPU of the later ones; reported on its own.
        cache = Path(tempfile.mkdtemp(dir=shm))
        mnt = fresh("f")
        with zos_mount(big_fl, mnt, server.url, cache, cache_mib) as proc:
            read_file("cold_first", proc, mnt)
        shutil.rmtree(cache)
        for _ in range(args.runs):
            add("tmpfs", size / dd([shm / "file"]))
            mnt = fresh("t")
            with mount([PY, str(TOP / "bench" / "_fuse_trivial.py"), str(mnt),
                        str(args.size_mib)], mnt, b"ready") as proc:
                read_file("trivial", proc, mnt)
            cache = Path(tempfile.mkdtemp(dir=shm))
            mnt = fresh("c")
            with zos_mount(big_fl, mnt, server.url, cache, cache_mib) as proc:
                read_file("cold", proc, mnt)
                add("rss", peak_rss_mib(proc.pid))
            mnt = fresh("w")
            with zos_mount(big_fl, mnt, server.url, cache, cache_mib) as proc:
                read_file("warm", proc, mnt)
            mnt = fresh("r")
            with zos_mount(big_fl, mnt, server.url, cache, cache_mib):
                add("iops", random_iops(mnt / "file", args.iops_s))
            add("iops_tmpfs", random_iops(shm / "file", args.iops_s))
            shutil.rmtree(cache)
            cache = Path(tempfile.mkdtemp(dir=shm))
            add("libs_tmpfs", lib_bytes / dd(lib_files))
            for kind in ("libs_cold", "libs_warm"):
                mnt = fresh("l")
                with zos_mount(libs_fl, mnt, server.url, cache, cache_mib):
                    add(kind, lib_bytes / dd([mnt / p.relative_to(libs) for p in lib_files]))
            shutil.rmtree(cache)

    def med(name: str) -> float:
        return statistics.median(rows[name])

    def mbs(name: str) -> str:
        return f"{med(name) / 1e6:8.0f} MB/s  (" + ", ".join(
            f"{v / 1e6:.0f}" for v in rows[name]) + ")"

    print(f"FUSE, median of {args.runs} (all runs in brackets), fresh mount each time,"
          f" `zosnode flist mount` as its own process:")
    print(f"sequential dd bs=1M of a {args.size_mib} MiB file of random bytes:")
    print(f"  tmpfs                    {mbs('tmpfs')}")
    print(f"  trivial pyfuse3 FS       {mbs('trivial')}")
    triv = med("trivial")
    print(f"  zosnode, warm cache      {mbs('warm')}   {med('warm') / triv:.2f} x trivial")
    print(f"  zosnode, cold (nginx)    {mbs('cold')}   {med('cold') / triv:.2f} x trivial")
    print(f"  zosnode, first cold read after nginx started (not in the median above):"
          f" {med('cold_first') / 1e6:.0f} MB/s, {med('cpu_cold_first') * 1e3:.2f} ms CPU per MiB"
          f" (system {med('sys_cold_first') * 1e3:.2f})")
    print(f"  mount process peak RSS over the cold read: {med('rss'):.0f} MiB"
          f" ({', '.join(f'{v:.0f}' for v in rows['rss'])})")
    # CPU per MiB holds steadier than MB/s on a machine shared with other work.
    print(f"  file system process CPU per MiB read (user+sys, all threads): trivial"
          f" {med('cpu_trivial') * 1e3:.2f} ms, zosnode warm {med('cpu_warm') * 1e3:.2f} ms"
          f" ({med('cpu_warm') / med('cpu_trivial'):.1f} x), cold {med('cpu_cold') * 1e3:.2f} ms"
          f" (system {med('sys_cold') * 1e3:.2f})")
    print(f"random 4 KiB preads, {args.iops_s:.0f} s each:")
    print(f"  tmpfs                    {med('iops_tmpfs'):8.0f} IOPS")
    print(f"  zosnode, warm cache      {med('iops'):8.0f} IOPS")
    print(f"{len(lib_files)} shared libraries, {lib_bytes / 1e6:.0f} MB, each read with dd"
          f" (builder's default compression):")
    print(f"  tmpfs                    {mbs('libs_tmpfs')}")
    print(f"  zosnode, cold (nginx)    {mbs('libs_cold')}")
    print(f"  zosnode, warm cache      {mbs('libs_warm')}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--libs-mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--iops-s", type=float, default=3.0)
    ap.add_argument("--eager", action="store_true",
                    help="then the eager extract comparison (bench/datapath_eager.py)")
    _host.add_argument(ap)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (FUSE mounts)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="zosnode-bench-fuse-"))
    shm = Path(tempfile.mkdtemp(prefix="zosnode-bench-fuse-", dir="/dev/shm"))
    with _host.freed_pages_held(args.hold_freed_pages):
        try:
            run(args, work, shm)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(shm, ignore_errors=True)
        if args.eager:
            import datapath_eager

            return datapath_eager.run(args.runs, casync=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
