"""`make demo`: a hub, a DHCP server and a node in network namespaces, boot, upgrade, rollback.

    sudo python3 examples/demo.py [--keep WORKDIR]

Steps, each printed as it happens; any failed step stops the demo with exit 1:
 1. build the demo OS (keys, root, anchor, two flists, three releases);
 2. create a "lab" namespace (bridge, dnsmasq) and a "node" namespace joined by a veth;
 3. start the node BEFORE the hub: it retries with backoff;
 4. start the hub, publish release 1; the node reaches `zosnode: ready 1 <id>`;
 5. the hub lists the node's heartbeat;
 6. publish release 2 (one changed file): the node upgrades, fetching only new blocks;
 7. publish release 3 (its greeter never becomes ready): the node rolls back to 2
    and reports release 3 as failed;
 8. remove everything it created (processes by PID, namespaces by name, files).

All traffic stays inside the two namespaces (10.77.0.0/24).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples import demo_os  # noqa: E402

REPO = demo_os.REPO
LAB_IP = "10.77.0.1"
HUB_PORT = 8080
HUB = f"http://{LAB_IP}:{HUB_PORT}"


class StepFailed(Exception):
    pass


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise StepFailed(f"ip {' '.join(args)}: {proc.stderr.strip()}")


class Lab:
    """Two namespaces, dnsmasq, a hub and a node; everything removed by `close()`."""

    def __init__(self, work: Path, say: Callable[[str], None] = print) -> None:
        self.work = work
        self.say = say
        tag = uuid.uuid4().hex[:6]
        self.lab_ns, self.node_ns = f"zdlab{tag}", f"zdnode{tag}"
        self.veth_lab, self.veth_node = f"zdl{tag}", f"zdn{tag}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.namespaces: list[str] = []
        self.hub_data = work / "hub-data"
        self.node_log = work / "node.log"
        self.kit: demo_os.Kit | None = None
        self._log_pos = 0

    # -- network ---------------------------------------------------------------

    def network(self) -> None:
        for ns in (self.lab_ns, self.node_ns):
            _ip("netns", "add", ns)
            self.namespaces.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", self.lab_ns, "link", "add", "br0", "type", "bridge", "forward_delay", "0")
        _ip("-n", self.lab_ns, "addr", "add", f"{LAB_IP}/24", "dev", "br0")
        _ip("-n", self.lab_ns, "link", "set", "br0", "up")
        _ip("-n", self.lab_ns, "link", "add", self.veth_lab, "type", "veth",
            "peer", "name", self.veth_node, "netns", self.node_ns)
        _ip("-n", self.lab_ns, "link", "set", self.veth_lab, "master", "br0")
        _ip("-n", self.lab_ns, "link", "set", self.veth_lab, "up")
        conf = self.work / "dnsmasq.conf"
        conf.write_text(
            "port=0\ninterface=br0\nbind-interfaces\nno-resolv\nno-hosts\nno-ping\n"
            "dhcp-range=10.77.0.50,10.77.0.99,255.255.255.0,1h\n"
            f"dhcp-option=option:router,{LAB_IP}\n"
            f"dhcp-leasefile={self.work / 'dnsmasq.leases'}\n"
        )
        self._spawn("dnsmasq", self.lab_ns, ["dnsmasq", "--no-daemon", "--log-facility=-",
                                             "--user=root", "--pid-file=",
                                             f"--conf-file={conf}"])
        self._wait_log("dnsmasq", "started", 10)

    # -- processes ------------------------------------------------------------------

    def _spawn(self, name: str, ns: str, argv: list[str]) -> None:
        log = open(self.work / f"{name}.log", "wb")  # noqa: SIM115 - lives with the process
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        self.procs[name] = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv], stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True)
        log.close()

    def _stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def _wait_log(self, name: str, needle: str, timeout_s: float) -> None:
        path = self.work / f"{name}.log"
        deadline = time.monotonic() + timeout_s
        while needle not in path.read_text(errors="replace"):
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise StepFailed(f"{name} exited: {path.read_text(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                raise StepFailed(f"{name}: no {needle!r} within {timeout_s:g} s")
            time.sleep(0.05)

    # -- hub ----------------------------------------------------------------------------

    def start_hub(self) -> None:
        assert self.kit is not None
        self.hub_data.mkdir(exist_ok=True)
        self._spawn("hub", self.lab_ns, [sys.executable, "-m", "zosnode", "hub", "serve",
                                         "--data", str(self.hub_data), "--listen",
                                         f"{LAB_IP}:{HUB_PORT}", "--publisher",
                                         self.kit.publisher_id])
        self._wait_log("hub", "listening on", 15)

    def stop_hub(self) -> None:
        self._stop("hub")
        (self.work / "hub.log").write_text("")

    def publish(self, version: int, *, first: bool = False) -> None:
        assert self.kit is not None
        roots = ["--root", str(self.kit.root)] if first else []
        self._in_lab([sys.executable, "-m", "zosnode", "hub", "push", "--hub", HUB,
                      "--key", str(self.kit.publisher_key), "--store", str(self.kit.store),
                      *roots, "--manifest", str(self.kit.manifest(version))])

    def nodes(self) -> list[dict[str, object]]:
        out = self._in_lab([sys.executable, "-c",
                            "import urllib.request,sys;sys.stdout.write(urllib.request."
                            f"urlopen('{HUB}/api/v1/nodes',timeout=5).read().decode())"])
        nodes: list[dict[str, object]] = json.loads(out)["nodes"]
        return nodes

    def _in_lab(self, argv: list[str]) -> str:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.run(["ip", "netns", "exec", self.lab_ns, *argv], capture_output=True,
                              text=True, env=env, cwd=REPO, timeout=60)
        if proc.returncode != 0:
            raise StepFailed(f"{' '.join(argv[:6])}...: {proc.stderr.strip()[-500:]}")
        return proc.stdout

    # -- node -----------------------------------------------------------------------

    def start_node(self, *, poll_ms: int = 2000, readiness_ms: int = 8000,
                   fuse: bool = False) -> None:
        assert self.kit is not None
        self._spawn("node", self.node_ns, [
            sys.executable, str(REPO / "examples" / "demo_node.py"),
            "--cmdline", f"zos.hub={HUB} zos.farm=demo zos.channel={demo_os.CHANNEL}",
            "--anchor", str(self.kit.anchor), "--run-dir", str(self.work / "node-run"),
            "--poll-ms", str(poll_ms), "--readiness-ms", str(readiness_ms),
            "--heartbeat-s", "2", *(["--fuse"] if fuse else [])])

    def stop_node(self) -> None:
        self._stop("node", signal.SIGINT)

    def node_lines(self) -> list[str]:
        return self.node_log.read_text(errors="replace").splitlines()

    def wait_node(self, pattern: str, timeout_s: float, *, since: int = 0) -> re.Match[str]:
        """The first node log line from line `since` on that matches `pattern`."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        while True:
            for line in self.node_lines()[since:]:
                m = rx.search(line)
                if m:
                    return m
            proc = self.procs.get("node")
            if proc is None or proc.poll() is not None:
                raise StepFailed("the node exited; last lines:\n" +
                                 "\n".join(self.node_lines()[-30:]))
            if time.monotonic() > deadline:
                raise StepFailed(f"no node line matching {pattern!r} within {timeout_s:g} s;"
                                 " last lines:\n" + "\n".join(self.node_lines()[-30:]))
            time.sleep(0.05)

    # -- teardown -------------------------------------------------------------------

    def close(self) -> None:
        for name in list(self.procs):
            self._stop(name, signal.SIGINT if name == "node" else signal.SIGTERM)
        for ns in reversed(self.namespaces):
            # What outlived its parent there (a node's services, in sessions of their own, when
            # the node itself needed SIGKILL) goes by its pid, before the namespace's name does.
            left = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            for pid in left.stdout.split():
                if pid.isdigit() and int(pid) != os.getpid():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        self.namespaces.clear()


def run_demo(work: Path, say: Callable[[str], None]) -> None:
    lab = Lab(work, say)
    step = 0

    def banner(text: str) -> None:
        nonlocal step
        step += 1
        say(f"\n== {step}. {text}")

    try:
        banner("build the demo OS: keys, root, anchor, two flists, three releases")
        lab.kit = demo_os.build(work / "kit")
        say(f"   anchor {lab.kit.anchor}; publisher {lab.kit.publisher_id[:16]}...")
        banner("network namespaces: lab (bridge 10.77.0.1/24, dnsmasq) and node (veth)")
        lab.network()
        say(f"   {lab.lab_ns} and {lab.node_ns}; dnsmasq pid {lab.procs['dnsmasq'].pid}")
        banner("start the node while the hub is still down (flists will be FUSE mounts)")
        lab.start_node(fuse=True)
        m = lab.wait_node(r"network up on \S+: (\S+)", 30)
        say(f"   DHCP lease {m.group(1)}")
        lab.wait_node(r"no hub served.*retry in", 20)
        say("   the node cannot reach a hub and backs off, as it should")
        banner("start the hub and publish release 1")
        lab.start_hub()
        lab.publish(1, first=True)
        m = lab.wait_node(r"zosnode: ready 1 ([0-9a-f]{64})", 60)
        node_id = m.group(1)
        say(f"   {m.group(0)}")
        say(f"   {lab.wait_node(r'hwreport: cpus=.*', 15).group(0)}")
        time.sleep(1)  # the status block is redrawn at most every 0.5 s
        say("   the node's console status:")
        lines = lab.node_lines()
        top = max(i for i, line in enumerate(lines) if "---- zosnode status ----" in line)
        for line in lines[top:top + 12]:
            if line.startswith("zosnode: ") and not line.startswith("zosnode: ["):
                say(f"     {line.removeprefix('zosnode: ')}")
            if line.startswith("zosnode: error"):
                break
        banner("the hub lists the node's signed heartbeat")
        deadline = time.monotonic() + 15
        while not [n for n in lab.nodes() if n["node_id"] == node_id]:
            if time.monotonic() > deadline:
                raise StepFailed("the hub never listed the node")
            time.sleep(0.3)
        info = next(n for n in lab.nodes() if n["node_id"] == node_id)
        say(f"   node {node_id[:16]}... release {info['release']} addresses "
            f"{info['addresses']} services "
            + ", ".join(f"{s['name']}={s['state']}" for s in info["services"]))  # type: ignore[attr-defined]
        banner("publish release 2 (the greeter's message changes)")
        mark = len(lab.node_lines())
        lab.publish(2)
        m = lab.wait_node(r"flist demo \S+: (FUSE mount at|.*fetched \d+).*", 30, since=mark)
        say(f"   {m.group(0)}")
        say(f"   {lab.wait_node(r'zosnode: ready 2 ', 30, since=mark).group(0)}...")
        say(f"   {lab.wait_node(r'greeter: hello from release two.*', 15, since=mark).group(0)}")
        banner("publish release 3, whose greeter never becomes ready")
        mark = len(lab.node_lines())
        lab.publish(3)
        say(f"   {lab.wait_node(r'release 3 failed, back on 2.*', 40, since=mark).group(0)}")
        deadline = time.monotonic() + 15
        while next(n for n in lab.nodes() if n["node_id"] == node_id)["failed_release"] != 3:
            if time.monotonic() > deadline:
                raise StepFailed("the hub never heard of the failed release")
            time.sleep(0.3)
        say("   the hub's node list shows failed_release 3, release 2 running")
    finally:
        banner("clean up: stop the node, the hub and dnsmasq; delete the namespaces")
        lab.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("demo: needs root (network namespaces, dnsmasq)", file=sys.stderr)
        return 2
    for tool in ("ip", "dnsmasq"):
        if shutil.which(tool) is None:
            print(f"demo: needs {tool} on PATH", file=sys.stderr)
            return 2
    work = args.keep or Path(tempfile.mkdtemp(prefix="zosnode-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        run_demo(work, lambda text: print(text, flush=True))
    except (StepFailed, RuntimeError) as exc:
        print(f"\ndemo: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\ndemo: every step passed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
