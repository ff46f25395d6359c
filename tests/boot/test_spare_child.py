"""The FUSE mount child started ahead of its request (`zosnode.agent.spare`).

The agent starts one child before the network is up, so its start overlaps
DHCP; the first mount hands its request to that child. A node forks it
(`spare.fork`: the real mount child, run by a script here because pytest's
process has threads); `spare.spawn` starts any command, and a fake child
here records when it started and answers `Ready`.
"""

from __future__ import annotations

import os
import sys
import threading
from functools import partial
from pathlib import Path

import trio

from tests.datapath.conftest import build_flist
from tests.datapath.fuse import require_fuse
from zosnode.agent import spare
from zosnode.agent.boot.mounters import FuseChildMounter
from zosnode.hub.service import RunningHub, run_hub
from zosnode.hub.storage import LocalStorage
from zosnode.mount.protocol import Ready, encode_report
from zosnode.trust.manifest import FlistPin

TOP = Path(__file__).resolve().parents[2]
PIN = FlistPin(name="os", id="a" * 64, size=3, mount="/")


def _fake(tmp: Path) -> list[str]:
    """Writes its pid, reads the request to EOF, reports Ready for PIN, waits."""
    ready = encode_report(Ready(PIN.id))
    code = (f"import os, sys, time; open({str(tmp / 'pids')!r}, 'a').write(f'{{os.getpid()}}\\n'); "
            f"sys.stdin.buffer.read(); os.write(int(sys.argv[1]), {ready!r}); time.sleep(30)")
    return [sys.executable, "-c", code]


def _pids(tmp: Path) -> list[int]:
    path = tmp / "pids"
    return [int(x) for x in path.read_text().split()] if path.exists() else []


async def _serve_once(mounter: FuseChildMounter, tmp: Path) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(mounter.serve, PIN, b"raw", tmp)
        nursery.cancel_scope.cancel()


async def test_the_first_mount_takes_the_child_started_ahead(tmp_path: Path) -> None:
    command = _fake(tmp_path)
    spare.spares[tuple(command)] = spare.spawn(command)
    with trio.fail_after(20):
        while not _pids(tmp_path):  # it runs before any request exists
            await trio.sleep(0.05)
    early = _pids(tmp_path)
    said: list[str] = []
    mounter = FuseChildMounter(command, mirrors=lambda: ["http://127.0.0.1:9"],
                               cache_dir=tmp_path / "blocks", say=said.append)
    with trio.fail_after(20):
        await _serve_once(mounter, tmp_path)
    assert f"(pid {early[0]}), started ahead" in said[0]  # the mount is the early child's
    assert _pids(tmp_path) == early  # no second child was started
    with trio.fail_after(20):
        await _serve_once(mounter, tmp_path)  # the next mount starts its own
    assert len(_pids(tmp_path)) == 2 and f"(pid {early[0]})" not in said[-1]
    for pid in _pids(tmp_path):  # both ended and reaped when their mount ended
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"child {pid} still runs")


async def test_a_spare_for_another_command_is_left_alone(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    spare.spares[tuple(_fake(other))] = spare.spawn(_fake(other))
    said: list[str] = []
    mounter = FuseChildMounter(_fake(tmp_path), mirrors=lambda: ["http://127.0.0.1:9"],
                               cache_dir=tmp_path / "blocks", say=said.append)
    with trio.fail_after(20):
        await _serve_once(mounter, tmp_path)
    assert len(_pids(tmp_path)) == 1 and len(spare.spares) == 1
    popen, read_fd = spare.spares.pop(tuple(_fake(other)))
    popen.kill()
    popen.wait()
    os.close(read_fd)


async def _forked(tmp_path: Path, flist: bytes, fid: str, hub: str) -> list[str]:
    (tmp_path / "flist").write_bytes(flist)
    (tmp_path / "mnt").mkdir()
    proc = await trio.run_process(
        [sys.executable, "-m", "tests.boot.forked_spare", str(tmp_path / "flist"), fid, hub,
         str(tmp_path / "mnt"), str(tmp_path / "cache")],
        cwd=TOP, capture_stdout=True, capture_stderr=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode().splitlines()


async def test_the_forked_spare_is_the_real_mount_child_and_is_reaped(tmp_path: Path) -> None:
    # No FUSE needed: the child decodes the request and refuses the flist, typed.
    lines = await _forked(tmp_path, b"not an flist", "b" * 64, "http://127.0.0.1:9")
    kind, pid = lines[0].split()
    assert kind == "Forked" and int(pid) != os.getpid()
    assert lines[1:] == ["failed: flist", "reaped"]


async def test_a_forked_spare_serves_a_real_mount(tmp_path: Path) -> None:
    require_fuse()
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "hostname").write_text("forked\n")
    data = tmp_path / "data"
    raw, fid = build_flist(src, data)
    async with trio.open_nursery() as nursery:
        running: RunningHub = await nursery.start(
            partial(run_hub, LocalStorage(str(data)), "127.0.0.1:0"))
        lines = await _forked(tmp_path, raw, fid, running.url)
        running.server.shutdown()
        nursery.cancel_scope.cancel()
    assert lines[0].startswith("Forked ")
    assert f"(pid {lines[0].split()[1]}), started ahead" in lines[1]
    assert lines[2:] == ["forked", "reaped"]


def test_no_fork_once_the_agent_has_a_second_thread() -> None:
    # A fork copies only the calling thread: with another running, the first mount starts its own.
    command = ["never-forked"]
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        spare.fork(command)
    finally:
        release.set()
        other.join()
    assert tuple(command) not in spare.spares
