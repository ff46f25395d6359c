#!/usr/bin/env python3
"""Node identity derivation time with a TPM (swtpm), beside the disk and RAM sources.

One derivation is what the agent does at boot: connect, GetCapability (the
maker), CreatePrimary of the HMAC key, HMAC of the label, FlushContext,
close, then the ed25519 key from the seed (`identity.load_or_create` with a
swtpm transport). The first derivation after swtpm starts is timed apart: it
includes swtpm loading (or, on a new state, making) its state. swtpm runs on
this machine (`swtpm socket --tpm2`, a Unix socket); a TPM chip on an LPC or
SPI bus is slower per command, so this is the codec's and the protocol's
cost, not a chip's. Same run, interleaved: the disk source (read
`<cache>/node.key`) and the RAM source (a new key).

Usage: python3 bench/identity_tpm.py [--runs 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.tpm import swtpm  # noqa: E402
from zosnode.agent import identity  # noqa: E402


def _ms(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    why = swtpm.missing()
    if why:
        print(f"skipped: {why}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="zosnode-bench-tpm-") as tmp:
        work = Path(tmp)
        cache = work / "cache"
        identity.load_or_create(cache, tpm=None)  # node.key for the disk source
        with swtpm.server(work / "state", work / "tpm.sock") as sock:
            def tpm() -> swtpm.SwtpmSocket:
                return swtpm.SwtpmSocket(sock)

            first = _ms(lambda: identity.load_or_create(None, tpm=tpm))
            times: dict[str, list[float]] = {"tpm": [], "disk": [], "ram": []}
            for _ in range(args.runs):
                times["tpm"].append(_ms(lambda: identity.load_or_create(cache, tpm=tpm)))
                times["disk"].append(_ms(lambda: identity.load_or_create(cache, tpm=None)))
                times["ram"].append(_ms(lambda: identity.load_or_create(None, tpm=None)))
        with swtpm.server(work / "state", work / "tpm.sock") as sock:  # a reboot
            again = _ms(lambda: identity.load_or_create(None, tpm=tpm))
    print(f"identity source, {args.runs} runs interleaved (ms)")
    print(f"{'source':<6} {'median':>8} {'p95':>8} {'max':>8}")
    for name, ts in times.items():
        ts.sort()
        p95 = ts[int(len(ts) * 0.95) - 1]
        print(f"{name:<6} {statistics.median(ts):8.2f} {p95:8.2f} {ts[-1]:8.2f}")
    print(f"first TPM derivation after swtpm started: {first:.2f} ms on a fresh state "
          f"(swtpm makes its seeds), {again:.2f} ms on the same state restarted")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
