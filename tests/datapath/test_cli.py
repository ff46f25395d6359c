"""`zosnode flist mount|extract --hub|record-prefetch` as a user runs them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from tests.datapath.conftest import build_flist, make_tree
from tests.datapath.fuse import require_fuse, snapshot
from tests.lab.nginx import Nginx, nginx
from zosnode.cache.store import BlockCache
from zosnode.cli.flist_remote import mounted
from zosnode.fetch.fetcher import Fetcher
from zosnode.flist.format import decode
from zosnode.mount.mountpoint import is_stale

TOP = Path(__file__).resolve().parents[2]


def zosnode(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    proc: subprocess.CompletedProcess[str] = subprocess.run(  # type: ignore[call-overload]
        [sys.executable, "-m", "zosnode", *args], cwd=TOP, text=True, capture_output=True,
        timeout=120, **kw)
    return proc


def _mounts() -> str:
    return Path("/proc/mounts").read_text()


@pytest.fixture
def served(tmp_path: Path, data_dir: Path) -> Iterator[tuple[Path, str, Nginx]]:
    require_fuse()
    src = make_tree(tmp_path / "src")
    _, fid = build_flist(src, data_dir)
    with nginx(data_dir, tmp_path / "nginx") as server:
        yield src, fid, server


def _start_mount(fid: str, mnt: Path, server: Nginx, cache: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "zosnode", "flist", "mount", fid, str(mnt),
         "--hub", server.url, "--cache", str(cache)],
        cwd=TOP, text=True, stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line.startswith("mounted "), line
    return proc


def test_extract_from_hub(tmp_path: Path, served: tuple[Path, str, Nginx]) -> None:
    src, fid, server = served
    out = tmp_path / "out"
    r = zosnode("flist", "extract", fid, str(out), "--hub", server.url, "--parallel", "4")
    assert r.returncode == 0, r.stderr
    assert subprocess.run(["diff", "-r", "--no-dereference", "-x", "fifo", "-x", "null",
                           str(src), str(out)]).returncode == 0
    assert snapshot(out) == snapshot(src)


def test_mount_ctrl_c_unmounts(tmp_path: Path, served: tuple[Path, str, Nginx]) -> None:
    src, fid, server = served
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = _start_mount(fid, mnt, server, tmp_path / "cache")
    try:
        assert (mnt / "bin" / "f7").read_bytes() == (src / "bin" / "f7").read_bytes()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) in (0, 130)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert str(mnt) not in _mounts()


async def test_stale_mount_after_crash_is_recovered_and_cache_shared(
    tmp_path: Path, served: tuple[Path, str, Nginx]
) -> None:
    src, fid, server = served
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cache = tmp_path / "cache"
    proc = _start_mount(fid, mnt, server, cache)
    try:
        first = await trio.to_thread.run_sync((mnt / "bin" / "f7").read_bytes)
        assert first == (src / "bin" / "f7").read_bytes()
    finally:
        proc.kill()  # a crash: nobody unmounts
        proc.wait()
    try:
        assert is_stale(mnt)
        # The in-process mount detaches the dead one and mounts again; the
        # blocks the crashed process cached are used, not fetched again.
        fetcher = Fetcher([server.url])
        data = await trio.to_thread.run_sync(_flist, server, fid)
        async with mounted(data, mnt, fetcher, BlockCache(cache, 1 << 30)) as m:
            again = await trio.to_thread.run_sync((mnt / "bin" / "f7").read_bytes)
            assert again == first
            assert m.source.cache is not None
            assert m.source.cache.stats.fetches == 0 and m.source.cache.stats.hits > 0
    finally:
        if str(mnt) in _mounts():
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def _flist(server: Nginx, fid: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(f"{server.url}/flists/{fid}") as r:  # noqa: S310 - loopback
        data: bytes = r.read()
    return data


def test_record_prefetch(tmp_path: Path, data_dir: Path) -> None:
    require_fuse()
    root = tmp_path / "src"
    for path in ("/bin/echo", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"):
        dst = root / path.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(path), dst)
    (root / "unused").write_bytes(os.urandom(300_000))
    _, fid = build_flist(root, data_dir)
    out = tmp_path / "hinted.flist"
    with nginx(data_dir, tmp_path / "nginx") as server:
        r = zosnode("flist", "record-prefetch", fid, "--hub", server.url, "-o", str(out),
                    "--cache", str(tmp_path / "c"), "--run", "/bin/echo", "hi")
    assert r.returncode == 0, r.stderr
    flist = decode(out.read_bytes())
    blocks = flist.blocks()
    assert flist.prefetch and set(flist.prefetch) <= set(blocks)
    unused = next(e for e in flist.entries if e.name == b"unused").extents
    assert not {x.id for x in unused} & set(flist.prefetch)  # type: ignore[union-attr]


def test_user_errors_are_one_line(tmp_path: Path) -> None:
    for args in (
        ("flist", "mount", str(tmp_path / "nope"), str(tmp_path), "--hub", "http://127.0.0.1:9"),
        ("flist", "extract", "x", str(tmp_path / "t"), "--hub", "ftp://h"),
        ("flist", "extract", "x", str(tmp_path / "t")),
        ("flist", "mount", "x", str(tmp_path)),
    ):
        r = zosnode(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr


def test_unreachable_hub_for_an_id_is_a_clear_error(tmp_path: Path) -> None:
    start = time.monotonic()
    r = zosnode("flist", "extract", "ab" * 32, str(tmp_path / "t"),
                "--hub", "http://127.0.0.1:9", "--deadline", "1")
    assert r.returncode == 2 and "flist abab" in r.stderr, r.stderr
    assert time.monotonic() - start < 60


def test_flist_extract_loads_no_mount_service_builder_or_fuse() -> None:
    # `flist extract --hub` is a node's command too: its start was a third of the eager
    # extract (the flist group loaded pyfuse3, the mount service and the builder).
    probe = ("import sys, contextlib, io\n"
             "from zosnode.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()), "
             "contextlib.suppress(SystemExit):\n"
             "    main(['flist', 'extract', '--help'])\n"
             "print(' '.join(sorted(sys.modules)))\n")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=TOP, text=True,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    loaded = set(proc.stdout.split())
    assert "zosnode.cli.flist_remote" in loaded  # the probe reached the command
    unwanted = {"pyfuse3", "zosnode.mount.service", "zosnode.flist.pack",
                "zosnode.flist.diff", "zosnode.flist.store", "zosnode.flist.browse"}
    assert not unwanted & loaded, sorted(unwanted & loaded)
