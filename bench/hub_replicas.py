"""Boot storm: 1 hub replica, 3 replicas behind nginx, and nginx static, one run.

    python3 bench/hub_replicas.py [--nodes 500] [--rounds 1]

Figures: bench/hub.md and BENCHMARKS.md, "Boot storm with 1 and 3 replicas".

The deployment an operator runs (docs/operations.md): `hub serve` replicas on
one SeaweedFS bucket (`--store s3://...`) and one PostgreSQL registry, nginx
as the load balancer in front. SeaweedFS, the replicas, both nginx and the
client run in one network namespace created here (loopback only, no other
link); PostgreSQL is a throwaway cluster run as nobody, reachable by its Unix
socket only (`tests/lab/seaweed.py`, `tests/lab/postgres.py`). The data set
and the client are `bench/hub_bootstorm.py`'s: N simulated nodes each fetch
the manifest, the flist and 18 blocks (2.58 MB) over one keep-alive
connection, every body checked against its BLAKE2b id, bounded by a deadline.
The objects are PUT into the bucket as is; nginx static serves the local
directory they were written from (the same bytes). Cases, in turn per round:

  1 replica     the client talks to one replica directly
  3 replicas    the client talks to nginx, which balances over 3 replicas
  nginx static  nginx serving the data directory (the static mirror)

Root needed (namespace, PostgreSQL as nobody). Exit status 1 if a hub case
failed any request.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.hub_bootstorm import PeakRss, build_data, cpu_seconds  # noqa: E402

HUB_PORTS = (7101, 7102, 7103)
LB_PORT = 7110
STATIC_PORT = 7120
BUCKET = "s3://zoshub/bench"


def curl_code(ns: str, url: str) -> str:
    from tests.lab.netns import nsexec

    out = subprocess.run(nsexec(ns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                "--max-time", "2", url),
                         capture_output=True, text=True, timeout=10)
    return out.stdout


def wait_http(ns: str, url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    end = time.monotonic() + 30
    while curl_code(ns, url) not in ("200", "404"):
        if proc.poll() is not None or time.monotonic() > end:
            raise RuntimeError(f"{url} did not come up: {log.read_text()[-2000:]}")
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_client(ns: str, port: int, workers: list[list[tuple[str, str | None]]],
               deadline: float) -> dict[str, Any]:
    """bench/hub_bootstorm.py's client process, run inside the namespace."""
    from tests.lab.netns import nsexec

    spec = {"host": "127.0.0.1", "port": port, "deadline_s": deadline, "workers": workers}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    try:
        out = subprocess.run(
            nsexec(ns, sys.executable, str(REPO / "bench/hub_bootstorm.py"), "--client",
                   f.name),
            capture_output=True, text=True, timeout=deadline + 60)
    finally:
        os.unlink(f.name)
    if out.returncode != 0:
        raise RuntimeError(f"client failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--deadline", type=float, default=120.0)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("hub_replicas: needs root (network namespace, PostgreSQL as nobody)",
              file=sys.stderr)
        return 2
    from tests.hub.replica_driver import PUBLISHER
    from tests.hub.test_replicas import LB_CONFIG
    from tests.lab.netns import nsexec
    from tests.lab.nginx import CONFIG as STATIC_CONFIG
    from tests.lab.postgres import postgres
    from tests.lab.seaweed import seaweed

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONPATH"] = str(REPO)
    results: dict[str, list[dict[str, Any]]] = {"1 replica": [], "3 replicas + nginx LB": [],
                                      "nginx static": []}
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="hub-replicas-") as tmp_s, \
            seaweed(Path(tmp_s) / "weed") as sw, postgres() as pg:
        tmp = Path(tmp_s)
        data_dir = tmp / "data"
        data = build_data(data_dir, random.Random(42))
        storm = [list(data["boot"]) for _ in range(args.nodes)]
        try:
            hubs = []
            for i, port in enumerate(HUB_PORTS):
                log = tmp / f"hub{port}.log"
                with open(log, "wb") as f:
                    proc = subprocess.Popen(
                        nsexec(sw.ns, sys.executable, "-m", "zosnode", "hub", "serve",
                               "--store", BUCKET, "--s3-endpoint", sw.endpoint,
                               "--listen", f"127.0.0.1:{port}", "--registry", pg.url,
                               "--max-connections", "8192",
                               "--publisher", PUBLISHER.verify_key.encode().hex()),
                        stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO)
                procs.append(proc)
                hubs.append(proc)
                # The first creates the bucket (SeaweedFS 500s a create race);
                # then the objects go in, as they are, by plain PUTs.
                wait_http(sw.ns, f"http://127.0.0.1:{port}/api/v1/channels", proc, log)
                if i == 0:
                    prefix = BUCKET.removeprefix("s3://")
                    for path, _ in data["boot"]:
                        subprocess.run(nsexec(sw.ns, "curl", "-sf", "-X", "PUT",
                                              "--data-binary", f"@{data_dir}{path}",
                                              f"{sw.endpoint}/{prefix}{path}"),
                                       check=True, capture_output=True, timeout=30)
            nginx_procs = {}
            servers = "\n        ".join(f"server 127.0.0.1:{p};" for p in HUB_PORTS)
            for name, port, template in (("lb", LB_PORT, LB_CONFIG),
                                         ("static", STATIC_PORT, STATIC_CONFIG)):
                work = tmp / f"nginx-{name}"
                work.mkdir()
                (work / "nginx.conf").write_text(template.format(
                    work=work, port=port, servers=servers, root=data_dir))
                proc = subprocess.Popen(
                    nsexec(sw.ns, "/usr/sbin/nginx", "-c", str(work / "nginx.conf"), "-p",
                           str(work), "-e", str(work / "error.log")),
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                procs.append(proc)
                nginx_procs[name] = proc
                wait_http(sw.ns, f"http://127.0.0.1:{port}/channels/stable/manifest", proc,
                          work / "error.log")
            # (name, port, hub pids, nginx pids): CPU is counted per kind.
            cases: list[tuple[str, int, list[int], list[int]]] = [
                ("1 replica", HUB_PORTS[0], [hubs[0].pid], []),
                ("3 replicas + nginx LB", LB_PORT, [h.pid for h in hubs],
                 [nginx_procs["lb"].pid]),
                ("nginx static", STATIC_PORT, [], [nginx_procs["static"].pid])]
            for rnd in range(args.rounds):
                for name, port, hub_pids, nginx_pids in cases:
                    kinds = {"hub_us": hub_pids, "nginx_us": nginx_pids, "weed_us": [sw.pid]}
                    cpu0 = {k: sum(map(cpu_seconds, pids)) for k, pids in kinds.items()}
                    r = run_client(sw.ns, port, storm, args.deadline)
                    n = max(1, r["requests"])
                    for k, pids in kinds.items():
                        r[k] = 1e6 * (sum(map(cpu_seconds, pids)) - cpu0[k]) / n
                    r["rps"] = r["requests"] / r["elapsed_s"]
                    results[name].append(r)
                    print(f"round {rnd + 1} {name:>22}: {r['rps']:6.0f} req/s "
                          f"{r['bytes'] / r['elapsed_s'] / 1e6:6.1f} MB/s "
                          f"p50 {r['p50_ms']:.0f} ms p99 {r['p99_ms']:.0f} ms "
                          f"errors {r['errors']} cpu us/req: hub {r['hub_us']:.0f} "
                          f"nginx {r['nginx_us']:.0f} weed {r['weed_us']:.0f}", flush=True)
                    if r["errors"]:
                        print("   ", r["first_errors"], flush=True)
            # VmHWM: each replica's peak over the whole run (replica 1 serves
            # both hub cases); an S3 object is held whole while it is sent.
            rss = [PeakRss(h.pid).kib() / 1024 for h in hubs]
        finally:
            for proc in reversed(procs):
                stop(proc)
    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores (shared with other work), "
          f"Python {platform.python_version()}, load {os.getloadavg()[0]:.2f}")
    print(f"boot storm: {args.nodes} nodes x (manifest + flist + {len(data['boot']) - 2} "
          f"blocks, {data['boot_bytes'] / 1e6:.2f} MB), {args.rounds} round(s)")
    print("hub peak RSS (VmHWM) per replica: "
          + ", ".join(f"{m:.0f} MiB" for m in rss))
    print()
    static = [r["rps"] for r in results["nginx static"]]
    print("| case | req/s | / nginx static | MB/s | p50/p99 ms | errors "
          "| CPU us/req hub / nginx / SeaweedFS |")
    print("|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        for r, ref in zip(runs, static, strict=True):
            print(f"| {name} | {r['rps']:.0f} | {r['rps'] / ref:.2f} "
                  f"| {r['bytes'] / r['elapsed_s'] / 1e6:.0f} "
                  f"| {r['p50_ms']:.0f}/{r['p99_ms']:.0f} | {r['errors']} "
                  f"| {r['hub_us']:.0f} / {r['nginx_us']:.0f} / {r['weed_us']:.0f} |")
    failed = any(r["errors"] for name, runs in results.items() if name != "nginx static"
                 for r in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
