#!/usr/bin/env python3
"""Verification cost: a 3-signature, 50-flist manifest, and following 10 root rotations.

The peer is the floor any verifier pays: the same ed25519 signature checks
(pynacl) and a cbor2 decode of the same bytes, with none of our rules. The
ratio shows what the rules (canonical re-encoding, schema, rollback and
expiry checks, domain separation) cost on top. Same run, same interpreter,
interleaved.

Usage: python3 bench/trust_verify.py [--runs 300]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cbor2
from nacl.signing import SigningKey, VerifyKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zosnode.trust.envelope import Envelope, signed_message  # noqa: E402
from zosnode.trust.manifest import FlistPin, Manifest, ServiceSpec  # noqa: E402
from zosnode.trust.signing import (
    encode_envelope,
    encode_manifest,
    encode_root,
    key_id,  # noqa: E402
    make_anchor,
    make_root,
    with_signature,
)  # noqa: E402
from zosnode.trust.verifier import Verifier  # noqa: E402

NOW = 1_790_000_000
YEAR = 365 * 86_400


def key(label: str) -> SigningKey:
    return SigningKey(hashlib.sha256(label.encode()).digest())


def signed(kind: str, body: bytes, signers: list[SigningKey]) -> bytes:
    env = Envelope(kind, body)
    for k in signers:
        env = with_signature(env, k)
    return encode_envelope(env)


def build() -> tuple[bytes, bytes, dict[int, bytes], list[SigningKey]]:
    keys = [key(f"g0-{i}") for i in range(3)]
    root = make_root(1, NOW + YEAR, 3, [key_id(k) for k in keys])
    root_bytes = signed("root", encode_root(root), keys)
    pins = tuple(
        FlistPin(f"flist{i:02d}", hashlib.blake2b(str(i).encode(), digest_size=32).hexdigest(),
                 10_000 + i, f"/opt/f{i:02d}")
        for i in range(50)
    )
    services = tuple(
        ServiceSpec(f"svc{i:02d}", f"flist{i:02d}", (f"/opt/f{i:02d}/bin/run", "--serve"),
                    env={"MODE": "prod"}, ready=(f"/opt/f{i:02d}/bin/check",))
        for i in range(10)
    )
    manifest = Manifest("stable", 42, NOW - 60, NOW + 30 * 86_400, "0.1.0", 1_000_000,
                        ("https://hub1.example", "https://hub2.example"),
                        ("https://mirror.example",), pins, services, {"notes": "bench"})
    manifest_bytes = signed("manifest", encode_manifest(manifest), keys)
    chain: dict[int, bytes] = {}
    old, old_threshold = keys, 3
    for v in range(2, 12):  # 10 rotations, each to a fresh 2-of-3 key set
        new = [key(f"g{v}-{i}") for i in range(3)]
        r = make_root(v, NOW + YEAR, 2, [key_id(k) for k in new])
        chain[v] = signed("root", encode_root(r), old[:old_threshold] + new[:2])
        old, old_threshold = new, 2
    return root_bytes, manifest_bytes, chain, keys


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu ?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300)
    args = ap.parse_args()
    root_bytes, manifest_bytes, chain, keys = build()
    anchor = make_anchor(root_bytes, 0, NOW - YEAR)

    def ours_manifest() -> None:
        Verifier(anchor).verify_manifest(manifest_bytes, channel="stable", now=NOW)

    env = cbor2.loads(manifest_bytes)

    def peer_manifest() -> None:
        doc = cbor2.loads(manifest_bytes)
        msg = signed_message("manifest", doc["signed"])
        for s in doc["signatures"]:
            VerifyKey(bytes.fromhex(s["keyid"])).verify(msg, s["sig"])
        cbor2.loads(doc["signed"])

    def ours_rotations() -> None:
        v = Verifier(anchor)
        refresh = v.refresh()
        while (wanted := refresh.wanted()) is not None and wanted in chain:
            refresh.received(chain[wanted])
        assert refresh.finish(NOW).version == 11

    def peer_rotations() -> None:
        for data in chain.values():
            doc = cbor2.loads(data)
            msg = signed_message("root", doc["signed"])
            for s in doc["signatures"]:
                VerifyKey(bytes.fromhex(s["keyid"])).verify(msg, s["sig"])
            cbor2.loads(doc["signed"])

    assert len(env["signatures"]) == 3
    cases: list[tuple[str, Callable[[], None], Callable[[], None], int]] = [
        ("manifest: 3 signatures, 50 flists", ours_manifest, peer_manifest, args.runs),
        ("root chain: 10 rotations", ours_rotations, peer_rotations, max(args.runs // 10, 20)),
    ]
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, {platform.machine()}, "
          f"{platform.python_implementation()} {platform.python_version()}")
    print(f"manifest size: {len(manifest_bytes)} bytes; root chain: "
          f"{sum(len(b) for b in chain.values())} bytes")
    for name, ours, peer, runs in cases:
        ours()
        peer()  # warm up both
        t_ours: list[float] = []
        t_peer: list[float] = []
        for _ in range(runs):
            for fn, acc in ((ours, t_ours), (peer, t_peer)):
                t0 = time.perf_counter()
                fn()
                acc.append(time.perf_counter() - t0)
        mo, mp = statistics.median(t_ours), statistics.median(t_peer)
        print(f"{name}: zosnode {mo * 1e3:.2f} ms, raw pynacl+cbor2 {mp * 1e3:.2f} ms, "
              f"ratio {mo / mp:.2f} (median of {runs})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
