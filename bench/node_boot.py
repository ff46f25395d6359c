#!/usr/bin/env python3
"""Node: agent start to ready in a namespace with dnsmasq and the hub, by phase.

    sudo python3 bench/node_boot.py [--runs 5]

Each run starts a fresh agent process (new node id, empty block cache) in the
node namespace, against the same dnsmasq and hub in the lab namespace, and
reads its phases from its own log and heartbeat:
  imports   process start -> agent modules imported
  network   -> DHCP lease chosen (bring-up, including its settle time)
  manifest  -> manifest fetched and verified (root refresh included)
  mount     -> flists fetched and materialised
  services  -> every service ready (probes included)
The peer in the same run is a bare `python3 -c pass` start (the ratio says
what the agent adds to an interpreter start). The last run also upgrades to
release 2 and reports the bytes fetched against the release's total size, and
the agent's RSS at ready and after the upgrade. Needs root and dnsmasq.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples import demo_os  # noqa: E402
from examples.demo import Lab  # noqa: E402
from zosnode.flist.store import LocalStore  # noqa: E402
from zosnode.flist.view import FlistView  # noqa: E402


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0



def python_start_ms(n: int = 5) -> float:
    times = []
    for _ in range(n):
        t = time.monotonic()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append((time.monotonic() - t) * 1000)
    return statistics.median(times)


def one_run(lab: Lab) -> tuple[dict[str, int], int]:
    lab.node_log.write_text("")
    # A cold link each run: down, no address, as a node that just powered on.
    for args in (("link", "set", lab.veth_node, "down"), ("addr", "flush", "dev", lab.veth_node)):
        subprocess.run(["ip", "-n", lab.node_ns, *args], check=True)
    lab.start_node(poll_ms=1000, readiness_ms=10_000)
    t0 = time.monotonic()
    imp = lab.wait_node(r"timing imports_ms=(\d+) network_ms=(\d+)", 60)
    node_id = lab.wait_node(r"zosnode: ready 1 ([0-9a-f]{64})$", 60).group(1)
    wall_ms = round((time.monotonic() - t0) * 1000)
    pid = lab.procs["node"].pid
    rss = rss_kib(pid)
    deadline = time.monotonic() + 20
    while True:
        mine = [n for n in lab.nodes() if n["node_id"] == node_id]
        if mine and mine[0]["boot_timings_ms"]:
            marks = mine[0]["boot_timings_ms"]
            break
        if time.monotonic() > deadline:
            raise RuntimeError("no heartbeat with boot timings")
        time.sleep(0.2)
    assert isinstance(marks, dict)
    phases = {
        "imports": int(imp.group(1)),
        "network": int(imp.group(2)),
        # The heartbeat's marks count from the agent process's start.
        "manifest": int(marks["manifest"]) - int(marks["cache"]),
        "mount": int(marks["mounts"]) - int(marks["manifest"]),
        "services": int(marks["services"]) - int(marks["mounts"]),
        "wall": wall_ms,
    }
    phases["total"] = sum(phases[k] for k in ("imports", "network", "manifest", "mount",
                                                "services"))
    return phases, rss


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    if os.geteuid() != 0 or shutil.which("dnsmasq") is None:
        print("node_boot: needs root and dnsmasq; skipped", file=sys.stderr)
        return 0
    work = Path(tempfile.mkdtemp(prefix="zosnode-bench-node-"))
    lab = Lab(work, say=lambda _t: None)
    results: list[dict[str, int]] = []
    try:
        lab.kit = demo_os.build(work / "kit")
        lab.network()
        lab.start_hub()
        lab.publish(1, first=True)
        rss_ready = 0
        for i in range(args.runs):
            phases, rss_ready = one_run(lab)
            results.append(phases)
            print(f"run {i + 1}: " + " ".join(f"{k}={v}ms" for k, v in phases.items()),
                  flush=True)
            if i < args.runs - 1:
                lab.stop_node()
        # Upgrade on the last node: bytes fetched against the release's size.
        mark = len(lab.node_lines())
        lab.publish(2)
        t_pub = time.monotonic()
        lab.wait_node(r"upgrading 1 -> 2", 30, since=mark)
        t_seen = time.monotonic()
        m = lab.wait_node(r"flist demo \w+: (\d+) blocks, fetched (\d+) \((\d+) bytes\)", 30,
                          since=mark)
        lab.wait_node(r"zosnode: ready 2 ", 30, since=mark)
        t_ready = time.monotonic()
        time.sleep(1)
        rss_upgraded = rss_kib(lab.procs["node"].pid)
        store = LocalStore(lab.kit.store)
        blocks = FlistView.from_bytes(store.resolve("demo-2")).flist.blocks()
        total = sum(len(store.get_block(b)) for b in blocks)
        fetched_bytes = int(m.group(3))
    finally:
        lab.close()
        shutil.rmtree(work, ignore_errors=True)
    py_ms = python_start_ms()
    keys = ("imports", "network", "manifest", "mount", "services", "total", "wall")
    med = {k: statistics.median(r[k] for r in results) for k in keys}
    print(f"\nmedian of {len(results)} runs (ms): " + " ".join(f"{k}={med[k]:.0f}" for k in keys))
    print(f"peer: python3 -c pass {py_ms:.0f} ms; agent imports / interpreter start = "
          f"{med['imports'] / py_ms:.1f}x")
    print(f"agent RSS: {rss_ready / 1024:.1f} MiB at ready, {rss_upgraded / 1024:.1f} MiB "
          "after the upgrade")
    print(f"upgrade 1 -> 2: seen {t_seen - t_pub:.2f} s after publishing (poll every "
          f"1.0 +- 0.25 s), switched {t_ready - t_seen:.2f} s later")
    print(f"upgrade 1 -> 2: fetched {m.group(2)} of {m.group(1)} blocks, {fetched_bytes} of "
          f"{total} stored bytes ({fetched_bytes / total:.5f} of the release)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
