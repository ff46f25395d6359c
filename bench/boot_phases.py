#!/usr/bin/env python3
"""QEMU start to `zosnode: ready`, by phase, against a trivial Python /init.

Both boot the same way, in the same run: a VM with a virtio NIC on a tap in a
namespace, its firmware iPXE, dnsmasq (DHCP, RA, TFTP), kernel and initramfs
over HTTP. The node runs the demo OS against the real hub; the floor is the
same runtime and modules with an /init that only prints (then exits, which
stops QEMU). Phase boundaries are the first console line of each stage, seen
by polling the serial log every 20 ms (host wall clock from QEMU start).
Runs alternate node and floor; medians are reported, and their ratio.

Usage: python3 bench/boot_phases.py [--runs 3] [--tree DIR] [--trace DIR] [--smp N] [--icount N]
  --tree: build the artifact from another checkout (default: this one)
  --trace: write each node run's console there, every line stamped with the
    seconds from QEMU start at which it appeared (polled every 20 ms)
  --smp: vCPUs of both VMs (default 1; QEMU's TCG runs one host thread per vCPU)
  --icount: QEMU's -icount shift=N on both VMs: the guest's clock counts instructions
    (2^N ns each) while it runs, so the agent's own `boot phases` line and the kernel's
    timestamps measure the guest's CPU work whatever the shared host is doing (an A/B of
    CPU changes); host wall-clock figures are slower under it and not comparable
"""

from __future__ import annotations

import argparse
import io
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP))

import _host  # noqa: E402  (bench/, beside this script)

from examples import demo_os  # noqa: E402
from tests.boot.conftest import NODE_PYTHON, build_initramfs  # noqa: E402
from tests.lab import qemu  # noqa: E402
from tests.lab.bootlab import BOOT, HUB, TAP, boot_lab  # noqa: E402
from zosnode.bootmedia import compression  # noqa: E402

NODE_PHASES = (
    ("firmware, iPXE DHCP+TFTP", r"zosnode: trying "),
    ("kernel+initramfs over HTTP", r"Linux version"),
    ("kernel boot to /init", r"Run /init as init process"),
    ("python start, agent imports", r"zosnode: mounted proc"),
    ("modules, firewall, DHCP", r"zosnode: chose \w+"),
    # The extraction path prints "<n> blocks", the FUSE path "FUSE mount at".
    ("manifest, mount", r"zosnode: flist \S+ \S+: (?:\d+ blocks|FUSE mount at)"),
    ("services to ready", r"zosnode: ready 1 "),
)
MEMORY = re.compile(r"agent memory: ([\d.]+) MiB resident, peak ([\d.]+) MiB")
AGENT_PHASES = re.compile(r"boot phases: [^\r\n]*")
FLOOR_PHASES = NODE_PHASES[:3] + (("python start, print", r"floor: up"),)
FLOOR_MAIN = 'print("floor: up", flush=True)\n'


def timeline(vm: qemu.Vm, phases: tuple[tuple[str, str], ...], limit_s: float) -> list[float]:
    """Seconds from QEMU start at which each phase's marker first appeared."""
    marks: list[float] = []
    pos = 0
    deadline = time.monotonic() + limit_s
    for _name, pattern in phases:
        rx = re.compile(pattern)
        while True:
            m = rx.search(vm.text(), pos)
            if m:
                marks.append(time.monotonic() - vm.started)
                pos = m.end()
                break
            if vm.proc.poll() is not None and not rx.search(vm.text(), pos):
                raise SystemExit(f"QEMU exited before {pattern!r}:\n{vm.tail()}")
            if time.monotonic() > deadline:
                raise SystemExit(f"no {pattern!r} within {limit_s} s:\n{vm.tail()}")
            time.sleep(0.02)
    return marks


class Stamper(threading.Thread):
    """Stamps each console line with when it first appeared, until `stop` is set."""

    def __init__(self, vm: qemu.Vm, out: Path) -> None:
        super().__init__(daemon=True)
        self.vm, self.out, self.stop = vm, out, threading.Event()

    def run(self) -> None:
        seen, lines = 0, []
        while True:
            stopping = self.stop.is_set()
            text = self.vm.text()
            done = text.rfind("\n") + 1
            now = time.monotonic() - self.vm.started
            lines += [f"{now:8.3f} {line}" for line in text[seen:done].splitlines()]
            seen = done
            if stopping:
                break
            time.sleep(0.02)
        self.out.write_text("\n".join(lines) + "\n")


def build_zipapp(tree: Path, out: Path, anchor: Path) -> Path:
    subprocess.run([sys.executable, str(tree / "build_zipapp.py"), "--python", NODE_PYTHON,
                    "-o", str(out), "--wheelhouse", str(TOP / "build/wheels"),
                    "--anchor", str(anchor)], check=True, capture_output=True, timeout=600)
    return out


def floor_zipapp(out: Path) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("__main__.py", FLOOR_MAIN)
    out.write_bytes(f"#!{NODE_PYTHON}\n".encode() + buf.getvalue())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tree", type=Path, default=TOP)
    ap.add_argument("--trace", type=Path)
    ap.add_argument("--smp", type=int, default=1)
    ap.add_argument("--icount", type=int, metavar="SHIFT")
    _host.add_argument(ap)
    args = ap.parse_args()
    with _host.freed_pages_held(args.hold_freed_pages):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="zosnode-bench-phases-") as tmp:
        work = Path(tmp)
        kit = demo_os.build(work / "kit")
        node_app = build_zipapp(args.tree, work / "node.pyz", kit.anchor)
        www = work / "lab" / "www" / "boot"
        for channel, app in ((demo_os.CHANNEL, node_app), ("floor", floor_zipapp(work / "f.pyz"))):
            proc = build_initramfs(app, www / channel, compression.DEFAULT)
            if proc.returncode != 0:
                raise SystemExit(proc.stderr)
        sizes = {c: (www / c / "initramfs.img").stat().st_size for c in (demo_os.CHANNEL, "floor")}
        node_runs: list[list[float]] = []
        floor_runs: list[list[float]] = []
        memory: list[tuple[float, float]] = []  # the agent's MiB at ready: resident, peak
        agent_lines: list[str] = []
        with boot_lab(work / "lab", "bench", demo_os.CHANNEL, "--hub", HUB,
                      "--boot-url", BOOT) as lab:
            lab.start_hub(kit.publisher_id)
            lab.push(kit.publisher_key, kit.store, kit.manifest(1), root=kit.root)
            script = work / "lab" / "bootserver" / "tftp" / "boot.ipxe"
            scripts = {}
            for channel in (demo_os.CHANNEL, "floor"):
                scripts[channel] = subprocess.run(
                    [sys.executable, "-m", "zosnode", "bootstrap", "ipxe", "--farm", "bench",
                     "--channel", channel, "--hub", HUB, "--boot-url", BOOT],
                    check=True, capture_output=True, text=True, cwd=TOP).stdout
            # A first boot on a cold host takes ~1.5 s more in the firmware (QEMU, its ROMs
            # and the lab's first DHCP): one floor boot, not counted, so neither side pays it.
            warm_up: list[list[float]] = []
            order = [(-1, "floor", FLOOR_PHASES, warm_up)] + [
                (i, channel, phases, runs) for i in range(args.runs)
                for channel, phases, runs in ((demo_os.CHANNEL, NODE_PHASES, node_runs),
                                              ("floor", FLOOR_PHASES, floor_runs))]
            for i, channel, phases, runs in order:
                script.write_text(scripts[channel])
                console = work / f"console-{channel}-{i}.log"
                argv = (qemu.base_argv(console, memory_mb=1024) + qemu.tap_nic_argv(TAP)
                        + ["-boot", "n", "-smp", str(args.smp)]
                        + ([] if args.icount is None else ["-icount", f"shift={args.icount}"]))
                with qemu.vm(qemu.nsexec_argv(lab.ns, argv), console, 300) as vm:
                    stamper = None
                    if args.trace and channel == demo_os.CHANNEL:
                        args.trace.mkdir(parents=True, exist_ok=True)
                        stamper = Stamper(vm, args.trace / f"node-{i}.log")
                        stamper.start()
                    runs.append(timeline(vm, phases, 240))
                    if channel == demo_os.CHANNEL:
                        _agent_report(vm, memory, agent_lines)
                    if stamper:
                        stamper.stop.set()
                        stamper.join()
    print(f"{args.runs} runs each, medians; node initramfs {sizes[demo_os.CHANNEL]} bytes, "
          f"floor initramfs {sizes['floor']} bytes")
    _report("node (QEMU start to ready)", NODE_PHASES, node_runs)
    _report("floor (trivial Python /init)", FLOOR_PHASES, floor_runs)
    node_total = statistics.median(r[-1] for r in node_runs)
    floor_total = statistics.median(r[-1] for r in floor_runs)
    print(f"ready {node_total:.1f} s / floor {floor_total:.1f} s = {node_total / floor_total:.2f}x")
    for line in agent_lines:
        print(f"  agent: {line}")
    if memory:
        print(f"agent memory at ready, median: {statistics.median(m[0] for m in memory):.1f} MiB"
              f" resident, peak {statistics.median(m[1] for m in memory):.1f} MiB")
    return 0


def _agent_report(vm: qemu.Vm, memory: list[tuple[float, float]], lines: list[str]) -> None:
    """The agent's own phase line and its memory at ready (printed just after ready)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        m = MEMORY.search(vm.text())
        if m:
            memory.append((float(m.group(1)), float(m.group(2))))
            phases = AGENT_PHASES.search(vm.text())
            if phases:
                lines.append(phases.group(0))
            return
        time.sleep(0.1)


def _report(title: str, phases: tuple[tuple[str, str], ...], runs: list[list[float]]) -> None:
    print(title)
    prev = [0.0] * len(runs)
    for i, (name, _) in enumerate(phases):
        spans = [r[i] - p for r, p in zip(runs, prev, strict=True)]
        prev = [r[i] for r in runs]
        print(f"  {name:<30} {statistics.median(spans):6.2f} s   "
              f"(at {statistics.median(r[i] for r in runs):6.2f} s)")


if __name__ == "__main__":
    raise SystemExit(main())
