"""End to end in network namespaces: real dnsmasq, the real hub, the real agent.

One lab for the whole story (building it is the expensive part): the node
starts while the hub is down, boots release 1 once it appears, upgrades to 2
fetching only the changed block, rolls 3 back, refuses an older and a badly
signed manifest from a hostile hub, skips a release outside its rollout, and
keeps running when the hub goes away. Every wait is bounded.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from examples import demo_os
from examples.demo import Lab
from tests.lab.netns import require_root
from zosnode.flist.store import LocalStore
from zosnode.flist.view import FlistView

pytestmark = pytest.mark.slow

POLL_MS = 1500
# A bound on waiting for something a poll should see: two poll intervals with
# their jitter, plus the time to fetch and start a release.
POLL_WAIT_S = 2 * (POLL_MS * 1.25) / 1000 + 10


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    require_root()
    if shutil.which("dnsmasq") is None:
        pytest.skip("needs dnsmasq (Debian package dnsmasq-base)")
    lab = Lab(tmp_path, say=lambda _t: None)
    try:
        yield lab
    finally:
        lab.close()
        for ns in (lab.lab_ns, lab.node_ns):
            assert ns not in os.popen("ip netns list").read()


def _objects(store: Path, tag: str) -> list[str]:
    """The flist file and block files of `tag`, as paths relative to the store."""
    s = LocalStore(store)
    fid = s.get_tag(tag)
    assert fid is not None
    blocks = FlistView.from_bytes(s.resolve(tag)).flist.blocks()
    return [f"flists/{fid}", *(f"blocks/{b[:2]}/{b}" for b in blocks)]


def block_ids(store: Path, tag: str) -> set[str]:
    s = LocalStore(store)
    return set(FlistView.from_bytes(s.resolve(tag)).flist.blocks())


def test_boot_upgrade_rollback_and_hostile_hub(lab: Lab) -> None:
    kit = lab.kit = demo_os.build(lab.work / "kit")
    lab.network()

    # The hub is down at boot: the node retries with backoff, then boots.
    lab.start_node(poll_ms=POLL_MS, readiness_ms=6000)
    lab.wait_node(r"network up on ", 30)
    retries = lab.wait_node(r"no hub served.*retry in ([\d.]+) s", 20)
    assert retries
    lab.start_hub()
    lab.publish(1, first=True)
    node_id = lab.wait_node(r"zosnode: ready 1 ([0-9a-f]{64})$", 60).group(1)
    lines = lab.node_lines()
    assert sum("no hub served" in line for line in lines) >= 1
    assert any(re.search(r"v1 setup: done", line) for line in lines)

    # The heartbeat is listed by the hub, signed by the node id.
    node = _wait_listed(lab, node_id, lambda n: n["release"] == 1)
    assert node["farm"] == "demo" and node["addresses"]
    assert {s["name"]: s["state"] for s in node["services"]} == {
        "setup": "done", "hwreport": "ready", "greeter": "ready"}

    # Release 2 appears, but the hub cannot serve its flist (a hub failing in
    # the middle of an upgrade): the node keeps release 1 and tries again.
    v1, v2 = block_ids(kit.store, "demo-1"), block_ids(kit.store, "demo-2")
    greeter_v1 = _pid_of(lab, "v1 greeter")
    channel = lab.hub_data / "channels" / demo_os.CHANNEL / "manifest"
    # (`hub push` sent every flist in the store: take release 2's own objects away.)
    held = set(_objects(kit.store, "demo-1"))
    for rel in _objects(kit.store, "demo-2"):
        if rel not in held:
            (lab.hub_data / rel).unlink()
    mark = len(lab.node_lines())
    channel.write_bytes(kit.manifest(2).read_bytes())
    lab.wait_node(r"release 2 could not be staged: .*keeping release 1", POLL_WAIT_S + 10,
                  since=mark)
    os.kill(greeter_v1, 0)
    assert not any("ready 2" in line or "v1 greeter: stopp" in line
                   for line in lab.node_lines()[mark:])

    # The hub gets the objects back: the next poll stages release 2, fetching
    # only the block that changed.
    mark = len(lab.node_lines())
    for rel in _objects(kit.store, "demo-2"):
        if not (lab.hub_data / rel).exists():
            (lab.hub_data / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(kit.store / rel, lab.hub_data / rel)
    fetched = lab.wait_node(r"flist demo \w+: (\d+) blocks, fetched (\d+) \((\d+) bytes\)",
                            POLL_WAIT_S, since=mark)
    assert int(fetched.group(1)) == len(v2) >= 3
    assert int(fetched.group(2)) == len(v2 - v1) == 1
    lab.wait_node(r"zosnode: ready 2 " + node_id, 20, since=mark)
    lab.wait_node(r"greeter: hello from release two", 15, since=mark)
    lab.wait_node(r"v1 greeter: stopped", 15, since=mark)
    _wait_listed(lab, node_id, lambda n: n["release"] == 2)

    # Release 3 never becomes ready: back to 2, reported, not retried.
    mark = len(lab.node_lines())
    lab.publish(3)
    lab.wait_node(r"release 3 failed, back on 2: not ready within 6000 ms: greeter",
                  POLL_WAIT_S + 10, since=mark)
    node = _wait_listed(lab, node_id, lambda n: n["failed_release"] == 3)
    assert node["release"] == 2
    greeter_pid = _pid_of(lab, "v2 greeter")
    os.kill(greeter_pid, 0)  # release 2's greeter never stopped

    # A hostile hub serves an older manifest, then one signed by a stranger.
    honest = channel.read_bytes()
    mark = len(lab.node_lines())
    channel.write_bytes(kit.manifest(1).read_bytes())
    lab.wait_node(r"manifest refused: RollbackError", POLL_WAIT_S, since=mark)
    stranger = kit.work / "stranger.key"
    demo_os.zosnode("keys", "generate", "-o", stranger)
    toml = kit.work.joinpath("release-2.toml").read_text().replace("version = 2", "version = 4")
    demo_os.sign_release(kit, toml, 4, key=stranger)
    mark = len(lab.node_lines())
    channel.write_bytes(kit.manifest(4).read_bytes())
    lab.wait_node(r"manifest refused: (Threshold|UnknownKey|BadSignature)Error", POLL_WAIT_S,
                  since=mark)
    channel.write_bytes(honest)
    assert not any("upgrading" in line for line in lab.node_lines()[mark:])

    # A release outside this node's rollout (0 ppm) is not applied.
    toml = (kit.work.joinpath("release-2.toml").read_text()
            .replace("version = 2", "version = 5").replace("rollout_ppm = 1000000",
                                                           "rollout_ppm = 0"))
    demo_os.sign_release(kit, toml, 5)
    mark = len(lab.node_lines())
    lab.publish(5)
    lab.wait_node(r"release 5 not applied: this node is outside the staged rollout",
                  POLL_WAIT_S, since=mark)

    # The hub goes away: the node keeps its release and its services.
    mark = len(lab.node_lines())
    lab.stop_hub()
    lab.wait_node(r"upgrade poll: no hub served.*; keeping release 2", POLL_WAIT_S,
                  since=mark)
    lab.wait_node(r"heartbeat: ", POLL_WAIT_S, since=mark)
    os.kill(greeter_pid, 0)
    assert not any("stopped" in line for line in lab.node_lines()[mark:])


def _wait_listed(lab: Lab, node_id: str, ok: object) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while True:
        for n in lab.nodes():
            if n["node_id"] == node_id and ok(n):  # type: ignore[operator]
                return n
        assert time.monotonic() < deadline, f"hub never listed {node_id} as wanted"
        time.sleep(0.3)


def _pid_of(lab: Lab, who: str) -> int:
    for line in reversed(lab.node_lines()):
        m = re.search(re.escape(who) + r": ready \(pid (\d+)", line)
        if m:
            return int(m.group(1))
    raise AssertionError(f"no pid for {who}")


def test_fuse_mounts_side_by_side_during_an_upgrade(lab: Lab) -> None:
    pytest.importorskip("pyfuse3")
    if not Path("/dev/fuse").exists():
        pytest.skip("needs /dev/fuse")
    lab.kit = demo_os.build(lab.work / "kit")
    lab.network()
    lab.start_hub()
    lab.publish(1, first=True)
    lab.start_node(poll_ms=POLL_MS, readiness_ms=8000, fuse=True)
    first = lab.wait_node(r"flist demo \w+: FUSE mount at (\S+) \(pid (\d+)\)", 60)
    node_id = lab.wait_node(r"zosnode: ready 1 ([0-9a-f]{64})$", 30).group(1)
    # The services ran from the FUSE mount: the exec allow-list resolved them there.
    assert any("[hwreport] hwreport: cpus=" in line for line in lab.node_lines())
    mark = len(lab.node_lines())
    lab.publish(2)
    second = lab.wait_node(r"flist demo \w+: FUSE mount at (\S+) \(pid (\d+)\)", POLL_WAIT_S,
                           since=mark)
    assert second.group(1) != first.group(1) and second.group(2) != first.group(2)
    lab.wait_node(r"zosnode: ready 2 " + node_id, 30, since=mark)
    lab.wait_node(r"greeter: hello from release two", 15, since=mark)
    # The old release's mount process is gone once the switch is done.
    deadline = time.monotonic() + 15
    while Path(f"/proc/{first.group(2)}").exists():
        assert time.monotonic() < deadline, "release 1's FUSE child outlived the switch"
        time.sleep(0.1)


FAULTY = """
channel = "demo"
version = 1
expires_in_days = 1
hubs = []
mirrors = []

[[flists]]
name = "demo"
tag = "demo-1"
mount = "/opt/demo"

[[services]]
name = "crasher"
flist = "demo"
argv = ["python", "bin/crash.py"]
restart_initial_ms = 200
restart_max_ms = 1600

[[services]]
name = "prepare"
flist = "demo"
argv = ["python", "bin/fail_setup.py"]
oneshot = true

[[services]]
name = "needs-prepare"
flist = "demo"
argv = ["python", "bin/greeter.py"]
after = ["prepare"]

[[services]]
name = "escape"
flist = "demo"
argv = ["/bin/sh", "-c", "echo escaped"]

[[services]]
name = "fine"
flist = "demo"
argv = ["python", "bin/hwreport.py"]
"""


def test_faulty_services_are_contained_and_reported(lab: Lab) -> None:
    kit = lab.kit = demo_os.build(lab.work / "kit")
    demo_os.sign_release(kit, FAULTY, 1)
    lab.network()
    lab.start_hub()
    lab.publish(1, first=True)
    lab.start_node(poll_ms=POLL_MS, readiness_ms=3000)
    lab.wait_node(r"release 1 is degraded: services never became ready", 60)
    node_id = lab.wait_node(r"zosnode: degraded 1 ([0-9a-f]{64})$", 10).group(1)
    assert not any(line.startswith("zosnode: ready") for line in lab.node_lines())
    # The crasher restarts with growing, capped delays.
    lab.wait_node(r"v1 crasher: backoff \(exited with code 3; restart in 1600 ms\)", 30)
    delays = [int(m.group(1)) for line in lab.node_lines()
              if (m := re.search(r"v1 crasher: backoff .*restart in (\d+) ms", line))]
    assert delays[:4] == [200, 400, 800, 1600]
    lines = "\n".join(lab.node_lines())
    assert "v1 prepare: failed (exited with code 1)" in lines
    assert "v1 needs-prepare: blocked (dependency prepare failed)" in lines
    assert "v1 needs-prepare: starting" not in lines
    assert re.search(r"v1 escape: refused \(exec refused: program '/bin/sh' resolves to "
                     r"\S+, outside the verified mounts\)", lines)
    assert "escaped" not in lines
    # The hub hears all of it in the signed heartbeat.
    node = _wait_listed(lab, node_id, lambda n: any(
        s["name"] == "crasher" and s["restarts"] >= 4 for s in n["services"]))
    states = {s["name"]: (s["state"], s["restarts"]) for s in node["services"]}
    assert states["prepare"][0] == "failed"
    assert states["needs-prepare"][0] == "blocked"
    assert states["escape"] == ("refused", 0)
    assert states["crasher"][0] in ("backoff", "starting", "ready")
    assert states["fine"] == ("ready", 0)
    assert node["failed_release"] == 1


def test_close_removes_what_outlived_its_parent_in_the_namespaces(lab: Lab) -> None:
    # A node's service runs in a session of its own: if the node itself needs SIGKILL, the
    # service outlives it, re-parented. close() must still remove it, by its pid.
    lab.network()
    orphan = subprocess.run(
        ["ip", "netns", "exec", lab.node_ns, "setsid", "--fork", "sleep", "300"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        timeout=10)
    assert orphan.returncode == 0
    deadline = time.monotonic() + 5
    while not (pids := subprocess.run(["ip", "netns", "pids", lab.node_ns], capture_output=True,
                                      text=True).stdout.split()):
        assert time.monotonic() < deadline, "the orphan never showed in the namespace"
        time.sleep(0.05)
    lab.close()
    time.sleep(0.2)
    for pid in pids:
        state = Path(f"/proc/{pid}/stat")
        assert not state.exists() or state.read_text().split(") ")[1][0] == "Z", pid
