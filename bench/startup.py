#!/usr/bin/env python3
"""Artifact size, and cold/warm start of `zosnode.pyz version` against `python3 -c pass`.

Cold: an empty runtime directory (natives are unpacked and verified).
Warm: the runtime directory already holds the verified natives (they are
still hashed on every start). All three are timed in the same run, with the
same interpreter, interleaved so machine noise hits them alike.

Usage: python3 bench/startup.py [--pyz dist/zosnode.pyz] [--runs 15]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
PYTHON = "/usr/bin/python3"


def timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pyz", type=Path, default=TOP / "dist" / "zosnode.pyz")
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    if not args.pyz.is_file():
        subprocess.run(["python3", str(TOP / "build_zipapp.py"), "-o", str(args.pyz)], check=True)
    work = Path(tempfile.mkdtemp(prefix="zosnode-bench-"))
    try:
        base = {"PATH": "/usr/bin:/bin"}
        warm_env = {**base, "ZOSNODE_RUNTIME_DIR": str(work / "warm")}
        subprocess.run([PYTHON, "-I", str(args.pyz), "version"], check=True, env=warm_env,
                       stdout=subprocess.DEVNULL)
        bare, cold, warm = [], [], []
        for i in range(args.runs):
            bare.append(timed([PYTHON, "-I", "-c", "pass"], base))
            cold_env = {**base, "ZOSNODE_RUNTIME_DIR": str(work / f"cold{i}")}
            cold.append(timed([PYTHON, "-I", str(args.pyz), "version"], cold_env))
            warm.append(timed([PYTHON, "-I", str(args.pyz), "version"], warm_env))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    b, c, w = (statistics.median(x) for x in (bare, cold, warm))
    size = args.pyz.stat().st_size
    print(f"artifact size: {size} bytes ({size / 2**20:.2f} MiB)")
    print(f"python3 -c pass: median {b * 1000:.1f} ms over {args.runs} runs")
    print(f"cold start:      median {c * 1000:.1f} ms  ({c / b:.1f}x python3 -c pass)")
    print(f"warm start:      median {w * 1000:.1f} ms  ({w / b:.1f}x python3 -c pass)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
