#!/usr/bin/env python3
"""Executions per second of every fuzz test in tests/fuzz, one table.

Each fuzz test (a `fuzz(target, strategy)` in tests/fuzz/test_*.py) runs
through the suite's own harness for `--seconds`. Two rates per row: all
inputs over wall time (what a fuzzing budget buys: hypothesis generating,
mutating and the target together), and inputs over the time spent inside
the target's check alone (what the code under test costs per input). There
is no real peer for these figures: no other fuzzer drives these decoders, so
they compare only with each other and with later runs.

Usage: python3 bench/fuzz.py [--seconds 5] [-k SUBSTRING]
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tests.fuzz  # noqa: E402
from tests.fuzz.budget import Target, run_budgeted  # noqa: E402


def fuzz_tests() -> list[tuple[str, Target, Any]]:
    found = []
    for mod in sorted(pkgutil.iter_modules(tests.fuzz.__path__), key=lambda m: m.name):
        if not mod.name.startswith("test_"):
            continue
        module = importlib.import_module(f"tests.fuzz.{mod.name}")
        for name, value in vars(module).items():
            spec = getattr(value, "fuzz", None)
            if name.startswith("test_") and spec is not None:
                target, strategy = spec
                found.append((name.removeprefix("test_"), target, strategy))
    return found


def timed(target: Target) -> tuple[Target, list[float]]:
    spent = [0.0]
    check: Callable[[bytes], None] = target.check

    def run(data: bytes) -> None:
        t0 = time.perf_counter()
        try:
            check(data)
        finally:
            spent[0] += time.perf_counter() - t0

    return Target(target.name, run, root=target.root, register=False), spent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="budget per fuzz test")
    ap.add_argument("-k", default="", help="only tests whose name contains this")
    args = ap.parse_args()
    rows = []
    for name, target, strategy in fuzz_tests():
        if args.k not in name:
            continue
        probe, spent = timed(target)
        stats = run_budgeted(probe, strategy, seconds=args.seconds)
        rows.append((name, target.name, stats.examples, stats.per_second,
                     stats.examples / spent[0] if spent[0] else 0.0,
                     100 * spent[0] / stats.seconds))
        print(f"  {name}: {stats.examples} inputs", file=sys.stderr, flush=True)
    print(f"Command: `python3 bench/fuzz.py --seconds {args.seconds:g}`. Machine: "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. No real peer: nothing "
          "else fuzzes these decoders.\n")
    print("| fuzz test | target | inputs | inputs/s (wall) | inputs/s (check only) "
          "| time in check |")
    print("|---|---|---:|---:|---:|---:|")
    for name, tname, n, wall, check, share in rows:
        print(f"| {name} | {tname} | {n:,} | {wall:,.0f} | {check:,.0f} | {share:.0f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
