"""The hub's web pages with 10,000 nodes in the registry, against the JSON API.

    python3 bench/hub_pages.py [--nodes 10000] [--quick]

Fills a SQLite registry with N nodes (real heartbeats, 4 farms, 2 releases,
a few stale and failed), a root and a channel with 3 release records, starts
a real `zosnode hub serve` process on 127.0.0.1 and measures, from this
process over raw sockets, the time to first byte and to the last byte of
each page and of its JSON twin:

- first: the first fleet page after the hub started (a new `hub serve` for
  each sample, alternately the HTML page and its JSON twin);
- idle: the first request after 2.2 s idle;
- warm: back-to-back requests.

Then each media kind: built cold (a new farm each time) and served from the
cache. Prints one table and a JSON line; exit status 1 if any request
failed. Bounded: fixed counts, a deadline per request.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP))

import nacl.signing  # noqa: E402

from zosnode.hub.registry_db import SqliteRegistry  # noqa: E402
from zosnode.trust.envelope import Envelope  # noqa: E402
from zosnode.trust.manifest import Manifest  # noqa: E402
from zosnode.trust.signing import (  # noqa: E402
    encode_envelope,
    encode_manifest,
    encode_root,
    key_id,  # noqa: E402
    make_root,
    with_signature,
)
from zosnode.wire.heartbeat import Heartbeat, ServiceState  # noqa: E402


def fill(data: Path, nodes: int) -> str:
    """The data directory and registry; returns one node id."""
    for sub in ("blocks", "flists", "roots", "channels/stable/releases", "boot/stable"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    signer = nacl.signing.SigningKey(hashlib.sha256(b"bench signer").digest())
    now = int(time.time())
    root = Envelope("root", encode_root(make_root(1, now + 86400, 1, [key_id(signer)])))
    (data / "roots" / "1.root").write_bytes(encode_envelope(with_signature(root, signer)))
    for v in (1, 2, 3):
        m = Manifest(channel="stable", version=v, issued_at=now - 3600 * (4 - v),
                     expires_at=now + 86400, rollout_ppm=500_000 if v == 3 else 1_000_000)
        doc = encode_envelope(with_signature(Envelope("manifest", encode_manifest(m)), signer))
        (data / "channels/stable/releases" / f"{v}.manifest").write_bytes(doc)
    (data / "channels/stable/manifest").write_bytes(doc)
    (data / "boot/stable/vmlinuz").write_bytes(os.urandom(8 << 20))
    (data / "boot/stable/initramfs.img").write_bytes(os.urandom(32 << 20))
    reg = SqliteRegistry(str(data / ".hub" / "registry.sqlite3"))
    reg.migrate()
    first = ""
    for i in range(nodes):
        nid = hashlib.blake2b(f"bench node {i}".encode(), digest_size=32).hexdigest()
        first = first or nid
        hb = Heartbeat(node_id=nid, farm=f"farm-{i % 4}", channel="stable",
                       release=2 + (i % 3 == 0), agent_version="0.1.0", sent_at=now,
                       uptime_s=3600, addresses=(f"10.{i >> 16 & 255}.{i >> 8 & 255}."
                                                 f"{i & 255}", "2001:db8::1"),
                       services=tuple(ServiceState(f"svc{j}", "failed" if i % 97 == 0 and
                                                   j == 0 else "running") for j in range(4)),
                       identity_source=("tpm", "disk", "ram")[i % 3])
        reg.record(hb, now - (5000 if i % 50 == 0 else 10), 1_000_000)
    reg.close()
    return first


def timed_get(port: int, path: str) -> tuple[float, float, int, int]:
    """(time to first byte, to the last byte, status, body bytes), seconds."""
    req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
        start = time.perf_counter()
        s.sendall(req.encode())
        first = s.recv(65536)
        ttfb = time.perf_counter() - start
        chunks = [first]
        while chunk := s.recv(1 << 20):
            chunks.append(chunk)
        total = time.perf_counter() - start
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    return ttfb, total, int(head.split()[1]), len(body)


def start_hub(data: Path, tmp: Path) -> tuple[subprocess.Popen[bytes], int, IO[bytes]]:
    """A `hub serve` on the data directory; (process, port, its log)."""
    log = open(tmp / "hub.log", "wb")  # noqa: SIM115 - closed by stop_hub
    hub = subprocess.Popen([sys.executable, "-m", "zosnode", "hub", "serve", "--data",
                            str(data), "--listen", "127.0.0.1:0"], stdout=log,
                           stderr=subprocess.STDOUT, cwd=TOP)
    deadline = time.monotonic() + 30
    while True:
        text = (tmp / "hub.log").read_text()
        if "listening on" in text:
            return hub, int(text.split("listening on ")[1].split()[0].rsplit(":", 1)[1]), log
        if hub.poll() is not None or time.monotonic() > deadline:
            stop_hub(hub, log)
            raise SystemExit(f"the hub did not start:\n{text}")
        time.sleep(0.1)


def stop_hub(hub: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    if hub.poll() is None:
        os.kill(hub.pid, signal.SIGTERM)
        hub.wait(timeout=20)
    log.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true", help="fewer samples")
    args = ap.parse_args()
    cold_n, warm_n, media_n, first_n = (2, 5, 1, 1) if args.quick else (5, 20, 3, 3)
    failures = 0
    with tempfile.TemporaryDirectory(prefix="zosnode-bench-pages-") as tmp:
        data = Path(tmp) / "data"
        t0 = time.monotonic()
        node = fill(data, args.nodes)
        print(f"registry filled with {args.nodes} nodes in {time.monotonic() - t0:.1f} s",
              file=sys.stderr)
        first: dict[str, list[float]] = {"/fleet": [], "/api/v1/fleet": []}
        for _ in range(first_n):
            for path, seen in first.items():
                hub, port, log = start_hub(data, Path(tmp))
                try:
                    ttfb, _, status, _ = timed_get(port, path)
                    failures += status != 200
                    seen.append(ttfb)
                finally:
                    stop_hub(hub, log)
        hub, port, log = start_hub(data, Path(tmp))
        try:
            pages = [
                ("boot media form", "/", "/api/v1/media"),
                ("media preview", "/media/preview?farm=f1&channel=stable&kind=iso",
                 "/api/v1/media?farm=f1&channel=stable&kind=iso"),
                ("fleet, page 1", "/fleet", "/api/v1/fleet"),
                ("fleet, farm filter, page 20", "/fleet?farm=farm-1&page=20",
                 "/api/v1/fleet?farm=farm-1&page=20"),
                ("fleet, stale nodes", "/fleet?state=stale", "/api/v1/fleet?state=stale"),
                ("node", f"/fleet/{node}", f"/api/v1/nodes/{node}"),
                ("releases", "/releases", "/api/v1/releases"),
                ("all nodes (existing API)", "", "/api/v1/nodes"),
            ]
            rows = []
            result: dict[str, object] = {"nodes": args.nodes}
            result["first_fleet_page"] = {
                p: {"ttfb_ms": [round(t * 1000, 1) for t in ts]} for p, ts in first.items()}
            print("first fleet page after start, time to first byte, ms: " + "; ".join(
                f"{p} {', '.join(f'{t * 1000:.0f}' for t in ts)}" for p, ts in first.items()))
            for name, html_path, json_path in pages:
                row = [name]
                for path in (html_path, json_path):
                    if not path:
                        row += ["", "", ""]
                        continue
                    cold, warm = [], []
                    size = 0
                    for _ in range(cold_n):
                        time.sleep(2.2)
                        ttfb, total, status, size = timed_get(port, path)
                        failures += status != 200
                        cold.append(ttfb)
                    for _ in range(warm_n):
                        ttfb, total, status, size = timed_get(port, path)
                        failures += status != 200
                        warm.append(ttfb)
                    c, w = statistics.median(cold) * 1000, statistics.median(warm) * 1000
                    row += [f"{c:.0f}", f"{w:.1f}", f"{size / 1024:.0f}"]
                    result[path] = {"idle_ttfb_ms": round(c, 1), "warm_ttfb_ms": round(w, 2),
                                    "kib": round(size / 1024, 1)}
                rows.append(row)
            print(f"\n{args.nodes} nodes; median time to first byte, ms (idle: after 2.2 s "
                  "idle; warm: back to back)")
            print(f"{'page':<30} {'HTML idle':>9} {'warm':>7} {'KiB':>6}   "
                  f"{'JSON idle':>9} {'warm':>7} {'KiB':>6}")
            for r in rows:
                print(f"{r[0]:<30} {r[1]:>9} {r[2]:>7} {r[3]:>6}   {r[4]:>9} {r[5]:>7} "
                      f"{r[6]:>6}")
            print("\nmedia build, s (cold: a new farm; cached: the same request again)")
            media = {}
            for kind in ("ipxe", "iso", "usb", "efi-img", "efi"):
                cold, cached = [], []
                size = 0
                for i in range(media_n):
                    path = f"/media/download?farm=bench-{kind}-{i}&channel=stable&kind={kind}"
                    _, total, status, size = timed_get(port, path)
                    failures += status != 200
                    cold.append(total)
                    _, total, status, _ = timed_get(port, path)
                    failures += status != 200
                    cached.append(total)
                c, k = statistics.median(cold), statistics.median(cached)
                media[kind] = {"cold_s": round(c, 3), "cached_s": round(k, 4),
                               "bytes": size}
                print(f"{kind:<8} cold {c:6.3f}   cached {k:6.4f}   {size} bytes")
            result["media"] = media
            print(json.dumps(result))
        finally:
            stop_hub(hub, log)
    if failures:
        print(f"{failures} request(s) failed", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
