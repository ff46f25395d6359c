"""Boot storm against the hub, and the same workload against nginx.

    python3 bench/hub_bootstorm.py [--nodes 1000] [--quick]

Exit status 1 if the hub failed any request.

Builds a data directory in the shared layout (a channel manifest, an flist
and its blocks of realistic sizes, plus 4 KiB / 64 KiB / 1 MiB object sets),
then, for the hub (`zosnode hub serve`, one process) and for nginx (one
worker, sendfile on) serving the SAME directory on 127.0.0.1:

1. boot storm: N simulated nodes connect at once; each fetches the manifest,
   the flist and its blocks over one keep-alive connection;
2. fixed-size objects: C connections fetch objects of one size in a loop.

The client is a separate process (raw sockets on trio, minimal HTTP/1.1
framing) so it does not share the server's interpreter; the machine has 2
cores, so client and server compete for CPU and the client's own CPU time is
reported. Every byte received is checked against its BLAKE2b id. Loops are
bounded by count and by a deadline.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# ---------------------------------------------------------------- client side


def _client_main(spec: dict) -> None:
    import trio

    host, port = spec["host"], spec["port"]
    deadline = spec["deadline_s"]
    lat: list[float] = []
    errors: list[str] = []
    total = {"bytes": 0, "requests": 0}

    async def get(stream, buf: bytearray, path: str, check: str | None) -> None:
        t0 = time.perf_counter()
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: b\r\n\r\n".encode())
        while b"\r\n\r\n" not in buf:
            chunk = await stream.receive_some(262144)
            if not chunk:
                raise ConnectionError("closed before headers")
            buf += chunk
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = bytearray(rest)
        while len(body) < length:
            chunk = await stream.receive_some(max(262144, length - len(body)))
            if not chunk:
                raise ConnectionError("closed mid-body")
            body += chunk
        buf[:] = body[length:]
        del body[length:]
        lat.append(time.perf_counter() - t0)
        total["requests"] += 1
        total["bytes"] += length
        if status != 200:
            raise ValueError(f"{path}: HTTP {status}")
        if check is not None and hashlib.blake2b(body, digest_size=32).hexdigest() != check:
            raise ValueError(f"{path}: body does not hash to its id")

    async def node(paths: list[tuple[str, str | None]]) -> None:
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            errors.append(f"connect: {exc}")
            return
        buf = bytearray()
        try:
            for path, check in paths:
                await get(stream, buf, path, check)
        except (OSError, ValueError, ConnectionError, trio.BrokenResourceError) as exc:
            errors.append(str(exc))
        finally:
            await stream.aclose()

    async def main() -> float:
        t0 = time.perf_counter()
        with trio.move_on_after(deadline) as scope:
            async with trio.open_nursery() as nursery:
                for paths in spec["workers"]:
                    nursery.start_soon(node, paths)
        if scope.cancelled_caught:
            errors.append(f"deadline of {deadline} s hit")
        return time.perf_counter() - t0

    elapsed = trio.run(main)
    lat.sort()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "elapsed_s": elapsed, "requests": total["requests"], "bytes": total["bytes"],
        "errors": len(errors), "first_errors": errors[:5],
        "p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None,
        "client_cpu_s": usage.ru_utime + usage.ru_stime,
    }))


# ---------------------------------------------------------------- data set


def _put(data_dir: Path, data: bytes) -> str:
    bid = hashlib.blake2b(data, digest_size=32).hexdigest()
    path = data_dir / "blocks" / bid[:2] / bid
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return bid


def build_data(data_dir: Path, rng: random.Random) -> dict:
    """A release as a node sees it, plus per-size object sets."""
    for sub in ("blocks", "flists", "roots", "channels/stable"):
        (data_dir / sub).mkdir(parents=True, exist_ok=True)
    # Block sizes of a small OS image packed by the flist packer: many small
    # packs, some medium, a few 1 MiB chunks of large files.
    sizes = [4096] * 10 + [65536] * 6 + [1048576] * 2
    boot_blocks = [_put(data_dir, rng.randbytes(s)) for s in sizes]
    flist = rng.randbytes(48 * 1024)
    fid = hashlib.blake2b(flist, digest_size=32).hexdigest()
    (data_dir / "flists" / fid).write_bytes(flist)
    manifest = rng.randbytes(2048)
    (data_dir / "channels/stable/manifest").write_bytes(manifest)
    sets = {}
    for label, size, count in (("4KiB", 4096, 200), ("64KiB", 65536, 100),
                               ("1MiB", 1048576, 40)):
        sets[label] = [_put(data_dir, rng.randbytes(size)) for _ in range(count)]
    boot = [("/channels/stable/manifest", None), (f"/flists/{fid}", fid)]
    boot += [(f"/blocks/{b[:2]}/{b}", b) for b in boot_blocks]
    return {"boot": boot, "boot_bytes": len(manifest) + len(flist) + sum(sizes), "sets": sets}


# ---------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not listen")


class PeakRss:
    """Samples a process's VmHWM (kernel-kept peak RSS)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def kib(self) -> int:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its direct children (nginx workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    try:
        pids += [int(c) for c in
                 Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def start_hub(data_dir: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "zosnode", "hub", "serve", "--data", str(data_dir),
         "--listen", f"127.0.0.1:{port}", "--max-connections", "8192"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    wait_port(port, proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_client(port: int, workers: list, deadline: float) -> dict:
    spec = {"host": "127.0.0.1", "port": port, "deadline_s": deadline, "workers": workers}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    try:
        out = subprocess.run([sys.executable, __file__, "--client", f.name],
                             capture_output=True, text=True, timeout=deadline + 60)
    finally:
        os.unlink(f.name)
    if out.returncode != 0:
        raise RuntimeError(f"client failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


# ---------------------------------------------------------------- workloads


def workloads(data: dict, nodes: int, quick: bool, rng: random.Random) -> list[tuple]:
    out = [("boot storm", [list(data["boot"]) for _ in range(nodes)])]
    per = {"4KiB": 200 if quick else 600, "64KiB": 100 if quick else 300,
           "1MiB": 10 if quick else 30}
    for label, ids in data["sets"].items():
        workers = [[(f"/blocks/{b[:2]}/{b}", b) for b in rng.choices(ids, k=per[label] // 10)]
                   for _ in range(50)]
        out.append((label, workers))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--deadline", type=float, default=90.0)
    ap.add_argument("--quick", action="store_true", help="a smaller run for a smoke test")
    ap.add_argument("--client", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        _client_main(json.loads(Path(args.client).read_text()))
        return
    sys.path.insert(0, str(REPO))
    from tests.lab.nginx import nginx

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    rng = random.Random(42)
    results: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="hub-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        data = build_data(data_dir, rng)
        runs = workloads(data, args.nodes, args.quick, rng)
        hub_port = free_port()
        hub = start_hub(data_dir, hub_port)
        rss = PeakRss(hub.pid)
        try:
            with nginx(data_dir, Path(tmp) / "nginx") as mirror:
                for name, workers in runs:
                    results[name] = {}
                    # Interleave the two servers, one pass each.
                    for server, port, pid in (("hub", hub_port, hub.pid),
                                              ("nginx", mirror.port, mirror.pid)):
                        cpu0 = cpu_seconds(pid)
                        r = run_client(port, workers, args.deadline)
                        r["server_cpu_us_per_req"] = (
                            1e6 * (cpu_seconds(pid) - cpu0) / max(1, r["requests"]))
                        r["rss_peak_mib"] = rss.kib() / 1024 if server == "hub" else None
                        results[name][server] = r
                        print(f"{name:>10} {server:>5}: {r['requests'] / r['elapsed_s']:8.0f} "
                              f"req/s {r['bytes'] / r['elapsed_s'] / 1e6:8.1f} MB/s "
                              f"p50 {r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms "
                              f"errors {r['errors']} "
                              f"server cpu {r['server_cpu_us_per_req']:.0f} us/req "
                              f"client cpu {r['client_cpu_s']:.1f} s",
                              flush=True)
                        if r["errors"]:
                            print("   ", r["first_errors"], flush=True)
        finally:
            stop(hub)
    print()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, load {os.getloadavg()[0]:.2f}")
    print(f"boot storm: {args.nodes} nodes, each manifest + flist + "
          f"{len(data['boot']) - 2} blocks ({data['boot_bytes'] / 1e6:.2f} MB)")
    print(f"hub peak RSS: {results['boot storm']['hub']['rss_peak_mib']:.0f} MiB")
    print()
    print("| workload | hub req/s | nginx req/s | hub/nginx | hub MB/s | nginx MB/s "
          "| hub p50/p99 ms | nginx p50/p99 ms | server CPU us/req hub/nginx "
          "| errors hub/nginx |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, pair in results.items():
        h, n = pair["hub"], pair["nginx"]
        hr, nr = h["requests"] / h["elapsed_s"], n["requests"] / n["elapsed_s"]
        print(f"| {name} | {hr:.0f} | {nr:.0f} | {hr / nr:.2f} | "
              f"{h['bytes'] / h['elapsed_s'] / 1e6:.0f} | {n['bytes'] / n['elapsed_s'] / 1e6:.0f} "
              f"| {h['p50_ms']:.1f}/{h['p99_ms']:.1f} | {n['p50_ms']:.1f}/{n['p99_ms']:.1f} "
              f"| {h['server_cpu_us_per_req']:.0f}/{n['server_cpu_us_per_req']:.0f} "
              f"| {h['errors']}/{n['errors']} |")
    # The hub must serve every request; the peer's errors are reported only
    # (the lab nginx has worker_connections 1024, under 1,000 clients + its own).
    if any(pair["hub"]["errors"] for pair in results.values()):
        sys.exit(1)


if __name__ == "__main__":
    threading.stack_size(1 << 20)
    main()
