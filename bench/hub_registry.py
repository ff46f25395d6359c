"""Heartbeats ingested per second: SQLite vs PostgreSQL, 1 vs 3 hub replicas.

    python3 bench/hub_registry.py [--nodes 2000] [--connections 24]

Figures: BENCHMARKS.md, "Hub: heartbeats ingested per second".

Needs root for PostgreSQL (a throwaway cluster run as nobody, socket only,
`tests/lab/postgres.py`); without it only SQLite is measured. Replicas are
`zosnode hub serve` processes on 127.0.0.1 sharing one data directory (SQLite:
one registry file, WAL; PostgreSQL: one database). A separate client process
sends pre-signed heartbeats over C keep-alive connections spread over the
replicas: first one per node (an insert, its history events), then a newer
one per node (an update). Every answer must be 204. The machine has 2 cores,
shared by client, replicas and database: the figures are relative.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _client(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    bodies = [bytes.fromhex(h) for h in spec["bodies"]]
    ports = spec["ports"]
    conns = spec["connections"]
    bad: list[int] = []

    def worker(i: int) -> None:
        port = ports[i % len(ports)]
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for body in bodies[i::conns]:
            c.request("POST", "/api/v1/heartbeat", body=body)
            r = c.getresponse()
            r.read()
            if r.status != 204:
                bad.append(r.status)
        c.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - t0
    print(json.dumps({"seconds": took, "count": len(bodies), "bad": bad[:5],
                      "bad_count": len(bad)}))


def signed_heartbeats(n: int, sent_at: int) -> list[str]:
    from tests.hub.releases import key
    from zosnode.wire.heartbeat import Heartbeat, ServiceState, encode_signed

    out = []
    for i in range(n):
        k = key(f"bench-node-{i}")
        hb = Heartbeat(node_id=k.verify_key.encode().hex(), farm="farm-1", channel="stable",
                       release=1 + (sent_at % 2), agent_version="0.1.0", sent_at=sent_at,
                       uptime_s=100, services=(ServiceState("web", "running"),),
                       addresses=("10.1.0.2/24",))
        out.append(encode_signed(hb, k).hex())
    return out


def spawn(data: Path, log: Path, registry: str | None) -> tuple[subprocess.Popen[bytes], int]:
    args = [sys.executable, "-m", "zosnode", "hub", "serve", "--data", str(data),
            "--listen", "127.0.0.1:0"]
    if registry:
        args += ["--registry", registry]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
    end = time.monotonic() + 30
    while time.monotonic() < end:
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", log.read_text())
        if m:
            return proc, int(m.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"hub did not start: {log.read_text()}")


def run_case(work: Path, name: str, registry: str | None, replicas: int,
             rounds: list[list[str]], connections: int) -> dict[str, object]:
    data = work / name
    procs = []
    try:
        ports = []
        for i in range(replicas):
            proc, port = spawn(data, work / f"{name}-{i}.log", registry)
            procs.append(proc)
            ports.append(port)
        rates = []
        for bodies in rounds:
            spec = work / f"{name}.json"
            spec.write_text(json.dumps({"bodies": bodies, "ports": ports,
                                        "connections": connections}))
            out = subprocess.run([sys.executable, __file__, "--client", str(spec)],
                                 capture_output=True, text=True, timeout=600, check=True)
            res = json.loads(out.stdout)
            if res["bad_count"]:
                raise RuntimeError(f"{name}: {res['bad_count']} heartbeats refused: "
                                   f"{res['bad']}")
            rates.append(res["count"] / res["seconds"])
        return {"case": name, "replicas": replicas, "insert_per_s": round(rates[0]),
                "update_per_s": round(rates[1])}
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=30)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=2000)
    ap.add_argument("--connections", type=int, default=24)
    ap.add_argument("--client")
    args = ap.parse_args()
    if args.client:
        _client(args.client)
        return 0
    now = int(time.time())
    rounds = [signed_heartbeats(args.nodes, now), signed_heartbeats(args.nodes, now + 1)]
    results = []
    with tempfile.TemporaryDirectory(prefix="zos-bench-reg-") as tmp:
        work = Path(tmp)
        # Baseline: the same hub with the registry in memory (what the HTTP
        # path and the signature check cost without a file or a server).
        results.append(run_case(work, "memory-1", "sqlite::memory:", 1, rounds,
                                args.connections))
        for replicas in (1, 3):
            results.append(run_case(work, f"sqlite-{replicas}", None, replicas, rounds,
                                    args.connections))
        if os.geteuid() == 0:
            from tests.lab.postgres import postgres

            with postgres() as pg:
                for replicas in (1, 3):
                    db = f"bench{replicas}"
                    pg.psql(f"CREATE DATABASE {db}")
                    results.append(run_case(work, f"postgresql-{replicas}",
                                            pg.url.replace("/postgres?", f"/{db}?"),
                                            replicas, rounds, args.connections))
    print(f"{'registry':<12} {'replicas':>8} {'new nodes/s':>12} {'updates/s':>10}")
    for r in results:
        print(f"{str(r['case']).split('-')[0]:<12} {r['replicas']:>8} "
              f"{r['insert_per_s']:>12} {r['update_per_s']:>10}")
    print(json.dumps({"nodes": args.nodes, "connections": args.connections,
                      "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
