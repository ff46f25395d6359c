"""The FUSE mount child started ahead of its request (`zosnode.agent.spare`).

The agent starts one child before the network is up, so its interpreter start
and imports overlap DHCP; the first mount hands its request to that child.
A fake child here records when it started and answers `Ready`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio

from zosnode.agent import spare
from zosnode.agent.boot.mounters import FuseChildMounter
from zosnode.mount.protocol import Ready, encode_report
from zosnode.trust.manifest import FlistPin

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
    spare.start(command)
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
    spare.start(_fake(other))
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
