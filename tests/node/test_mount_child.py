"""The agent's FUSE mount child: started against a real hub, typed failures, no text read.

The mounter (`FuseChildMounter`) and the child (`zosnode _mount-child`) talk
only through zosnode.mount.protocol; every assertion here is on a kind, never
on a message.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest
import trio

from tests.datapath.conftest import build_flist
from tests.datapath.fuse import require_fuse
from zosnode.agent.boot.mounters import ChildLost, FuseChildMounter, MountChildFailed
from zosnode.hub.service import RunningHub, run_hub
from zosnode.hub.storage import LocalStorage
from zosnode.mount.mountpoint import detach
from zosnode.mount.protocol import (
    CacheCounts,
    Failure,
    FailureKind,
    MountRequest,
    Ready,
    Report,
    ReportReader,
    encode_report,
    encode_request,
)
from zosnode.trust.manifest import FlistPin

TOP = Path(__file__).resolve().parents[2]
CHILD = [sys.executable, "-m", "zosnode", "_mount-child"]


@pytest.fixture
def image(tmp_path: Path) -> tuple[bytes, FlistPin]:
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "hostname").write_text("zos\n")
    (src / "big").write_bytes(os.urandom(300_000))
    data_dir = tmp_path / "data"
    (data_dir / "blocks").mkdir(parents=True)
    (data_dir / "flists").mkdir()
    raw, fid = build_flist(src, data_dir)
    return raw, FlistPin(name="os", id=fid, size=len(raw), mount="/")


@pytest.fixture
async def hub(tmp_path: Path, image: object) -> AsyncIterator[RunningHub]:
    async with trio.open_nursery() as nursery:
        running: RunningHub = await nursery.start(
            partial(run_hub, LocalStorage(str(tmp_path / "data")), "127.0.0.1:0"))
        yield running
        running.server.shutdown()
        nursery.cancel_scope.cancel()


def _mounter(tmp_path: Path, hub_url: str, command: list[str] = CHILD,
             **kw: object) -> FuseChildMounter:
    kw.setdefault("say", print)
    return FuseChildMounter(command, mirrors=lambda: [hub_url], cache_dir=tmp_path / "blocks",
                            **kw)  # type: ignore[arg-type]


async def _mount_error(mounter: FuseChildMounter, pin: FlistPin, flist: bytes,
                       where: Path) -> MountChildFailed:
    async with trio.open_nursery() as nursery:
        with pytest.raises(MountChildFailed) as info:
            await nursery.start(mounter.serve, pin, flist, where)
        nursery.cancel_scope.cancel()
    return info.value


def _mounts() -> str:
    return Path("/proc/mounts").read_text()


async def test_child_mounts_from_the_hub_and_unmounts_when_cancelled(
        tmp_path: Path, image: tuple[bytes, FlistPin], hub: RunningHub) -> None:
    require_fuse()
    raw, pin = image
    where = tmp_path / "mnt"
    where.mkdir()
    said: list[str] = []
    mounter = _mounter(tmp_path, hub.url, say=said.append)
    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(mounter.serve, pin, raw, where)
        print(f"mount child ready in {trio.current_time() - started:.3f} s")
        assert os.path.ismount(where)
        text = await trio.to_thread.run_sync((where / "etc" / "hostname").read_text)
        assert text == "zos\n"
        assert len(await trio.to_thread.run_sync((where / "big").read_bytes)) == 300_000
        nursery.cancel_scope.cancel()
    assert not os.path.ismount(where)
    assert str(where) not in _mounts()
    assert len(said) == 1  # the console was told of the mount
    # The flist went to the child inside the request: no copy of it was written
    # (there used to be one, renamed into place without an fsync).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocks", "data", "mnt", "src"]


async def test_bad_flist_is_a_typed_failure(
        tmp_path: Path, image: tuple[bytes, FlistPin], hub: RunningHub) -> None:
    _, pin = image
    where = tmp_path / "mnt"
    where.mkdir()
    err = await _mount_error(_mounter(tmp_path, hub.url), pin, b"not an flist", where)
    assert err.kind is FailureKind.FLIST
    assert not os.path.ismount(where)


async def test_missing_mountpoint_is_a_typed_failure(
        tmp_path: Path, image: tuple[bytes, FlistPin], hub: RunningHub) -> None:
    raw, pin = image
    err = await _mount_error(_mounter(tmp_path, hub.url), pin, raw, tmp_path / "nowhere")
    assert err.kind is FailureKind.MOUNTPOINT
    (tmp_path / "file").write_text("")
    err = await _mount_error(_mounter(tmp_path, hub.url), pin, raw, tmp_path / "file")
    assert err.kind is FailureKind.MOUNTPOINT


async def test_mountpoint_already_mounted_is_a_typed_failure(
        tmp_path: Path, image: tuple[bytes, FlistPin], hub: RunningHub) -> None:
    require_fuse()
    raw, pin = image
    where = tmp_path / "mnt"
    where.mkdir()
    async with trio.open_nursery() as nursery:
        await nursery.start(_mounter(tmp_path, hub.url).serve, pin, raw, where)
        err = await _mount_error(_mounter(tmp_path, hub.url), pin, raw, where)
        assert err.kind is FailureKind.MOUNTPOINT
        assert os.path.ismount(where)  # the first mount is untouched
        nursery.cancel_scope.cancel()


async def test_unusable_cache_is_a_typed_failure(
        tmp_path: Path, image: tuple[bytes, FlistPin], hub: RunningHub) -> None:
    raw, pin = image
    (tmp_path / "mnt").mkdir()
    (tmp_path / "blocks").write_text("a file where the cache directory should be")
    err = await _mount_error(_mounter(tmp_path, hub.url), pin, raw, tmp_path / "mnt")
    assert err.kind is FailureKind.CACHE


# -- children that misbehave: the agent's side holds without FUSE -----------------------------


def _fake(code: str) -> list[str]:
    """A 'child' that runs `code` with `fd` = the report pipe's number."""
    return [sys.executable, "-c", f"import os, sys; fd = int(sys.argv[1]); {code}"]


async def test_child_that_exits_silently_is_lost(
        tmp_path: Path, image: tuple[bytes, FlistPin]) -> None:
    raw, pin = image
    err = await _mount_error(_mounter(tmp_path, "http://127.0.0.1:9", _fake("sys.exit(3)")),
                             pin, raw, tmp_path)
    assert err.kind is ChildLost.EXITED


async def test_child_that_says_text_is_garbled(
        tmp_path: Path, image: tuple[bytes, FlistPin]) -> None:
    raw, pin = image
    # The old contract ("any output containing 'mounted' is success") would take this.
    fake = _fake("os.write(fd, b'mounted, honest'); sys.stdin.read(); import time; "
                 "time.sleep(30)")
    err = await _mount_error(_mounter(tmp_path, "http://127.0.0.1:9", fake), pin, raw, tmp_path)
    assert err.kind is ChildLost.GARBLED


async def test_child_ready_for_another_flist_is_garbled(
        tmp_path: Path, image: tuple[bytes, FlistPin]) -> None:
    raw, pin = image
    other = encode_report(Ready("0" * 64))
    fake = _fake(f"os.write(fd, {other!r}); import time; time.sleep(30)")
    err = await _mount_error(_mounter(tmp_path, "http://127.0.0.1:9", fake), pin, raw, tmp_path)
    assert err.kind is ChildLost.GARBLED


async def test_child_that_never_reports_times_out_and_is_ended(
        tmp_path: Path, image: tuple[bytes, FlistPin]) -> None:
    raw, pin = image
    pidfile = tmp_path / "pid"
    fake = _fake(f"open({str(pidfile)!r}, 'w').write(str(os.getpid())); import time; "
                 "time.sleep(60)")
    mounter = _mounter(tmp_path, "http://127.0.0.1:9", fake, start_timeout_s=1.0)
    started = trio.current_time()
    err = await _mount_error(mounter, pin, raw, tmp_path)
    assert err.kind is ChildLost.TIMEOUT
    assert trio.current_time() - started < 10
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped, not left running


async def test_child_failure_report_is_passed_on_typed(
        tmp_path: Path, image: tuple[bytes, FlistPin]) -> None:
    raw, pin = image
    report = encode_report(Failure(FailureKind.FUSE, "no /dev/fuse"))
    fake = _fake(f"os.write(fd, {report!r})")
    err = await _mount_error(_mounter(tmp_path, "http://127.0.0.1:9", fake), pin, raw, tmp_path)
    assert err.kind is FailureKind.FUSE


async def test_request_the_agent_cannot_build_fails_the_release_typed(
        tmp_path: Path, image: tuple[bytes, FlistPin]) -> None:
    raw, pin = image
    marker = tmp_path / "spawned"
    fake = _fake(f"open({str(marker)!r}, 'w')")
    mounter = _mounter(tmp_path, "http://" + "x" * 3000, fake)  # longer than any URL we take
    err = await _mount_error(mounter, pin, raw, tmp_path)
    assert err.kind is FailureKind.REQUEST
    assert not marker.exists()  # no child was started for it


# -- the child on its own: stdin in, reports out --------------------------------------------


def _run_child(stdin: bytes, *extra: str) -> tuple[int, list[Report], str]:
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.run([*CHILD, *(extra or (str(write_fd),))], input=stdin,
                              pass_fds=(write_fd,), capture_output=True, timeout=60, cwd=TOP)
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        data = f.read()
    reader = ReportReader()
    reports = reader.feed(data)
    reader.eof()
    return proc.returncode, reports, proc.stderr.decode()


def test_child_refuses_a_garbled_request_typed() -> None:
    code, reports, _ = _run_child(b"--hub http://x mounted")
    assert code == 2
    assert [type(r) for r in reports] == [Failure]
    assert isinstance(reports[0], Failure) and reports[0].kind is FailureKind.REQUEST


def test_child_started_by_hand_is_a_one_line_usage_error() -> None:
    proc = subprocess.run([*CHILD], capture_output=True, text=True, timeout=60, cwd=TOP,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


async def test_child_reports_unmounted_from_outside_as_fatal(
        tmp_path: Path, image: tuple[bytes, FlistPin], hub: RunningHub) -> None:
    require_fuse()
    raw, pin = image
    where = tmp_path / "mnt"
    where.mkdir()
    request = MountRequest(
        flist=raw, mountpoint=str(where), hubs=(hub.url,), cache_dir=str(tmp_path / "c"),
        cache_bytes=1 << 26, durable=False, block_deadline_ms=10_000, hot_bytes=1 << 20,
        prefetch=False)
    read_fd, write_fd = os.pipe()
    proc = await trio.lowlevel.open_process([*CHILD, str(write_fd)], stdin=subprocess.PIPE,
                                            pass_fds=(write_fd,), cwd=TOP)
    os.close(write_fd)
    reports = trio.lowlevel.FdStream(read_fd)
    reader = ReportReader()
    got: list[Report] = []
    try:
        assert proc.stdin is not None
        await proc.stdin.send_all(encode_request(request))
        await proc.stdin.aclose()
        with trio.fail_after(30):
            while not got:
                got += reader.feed(await reports.receive_some(4096))
        assert got[0] == Ready(pin.id)
        await trio.to_thread.run_sync(detach, where)  # taken away from outside
        with trio.fail_after(30):
            while chunk := await reports.receive_some(4096):
                got += reader.feed(chunk)
            reader.eof()
            assert await proc.wait() == 1
        # Its cache's counts follow Ready (for the heartbeat), then the fatal failure.
        assert isinstance(got[1], CacheCounts) and got[1].misses == 0
        got = [r for r in got if not isinstance(r, CacheCounts)]
        assert [type(r) for r in got] == [Ready, Failure]
        assert isinstance(got[1], Failure) and got[1].kind is FailureKind.UNMOUNTED
    finally:
        await reports.aclose()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        # Failed before the detach: the killed child left a dead mount; never leave it.
        if where.resolve().as_posix() in Path("/proc/self/mounts").read_text():
            detach(where)


def test_child_loads_pyfuse3_without_importlib_metadata() -> None:
    """pyfuse3 only names its version with it; the stand-in goes, the real module still loads."""
    script = (
        "import os, sys\n"
        "from zosnode.mount import child\n"
        "r, w = os.pipe()\n"
        "child.main([str(w)], stdin=os.open(os.devnull, os.O_RDONLY))\n"
        "import pyfuse3\n"
        "print('importlib.metadata' in sys.modules, pyfuse3.__version__)\n"
        "import importlib.metadata\n"
        "print(importlib.metadata.version('pyfuse3') != 'unknown')\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=TOP)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "unknown", "True"]
