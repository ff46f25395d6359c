"""Acceptance: the Debian minbase image, mounted from an nginx mirror of the hub layout."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio

from tests.datapath.conftest import build_flist
from tests.datapath.fuse import require_fuse, snapshot
from tests.lab.nginx import nginx
from tests.lab.rootfs import debian_rootfs  # noqa: F401 - a fixture
from zosnode.cache.store import BlockCache
from zosnode.cli.flist_remote import mounted
from zosnode.fetch.fetcher import Fetcher

pytestmark = pytest.mark.slow

_SPECIAL = re.compile(
    r"File .* is a (fifo|character special file|block special file|socket) while file .*"
    r" is a \1"
)


async def _diff_clean(a: Path, b: Path) -> None:
    proc = await trio.run_process(["diff", "-r", "--no-dereference", str(a), str(b)],
                                  check=False, capture_stdout=True, capture_stderr=True)
    # diff cannot compare device nodes or fifos by content; the stat comparison does.
    lines = [ln for ln in proc.stdout.decode().splitlines() if not _SPECIAL.fullmatch(ln)]
    assert not lines and not proc.stderr, "\n".join(lines[:20]) + proc.stderr.decode()


async def test_debian_minbase_from_nginx(
    tmp_path: Path, data_dir: Path, debian_rootfs: Path  # noqa: F811
) -> None:
    require_fuse()
    data, _ = await trio.to_thread.run_sync(build_flist, debian_rootfs, data_dir)
    cache_dir = tmp_path / "cache"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with nginx(data_dir, tmp_path / "nginx") as server:
        async with mounted(data, mnt, Fetcher([server.url]), BlockCache(cache_dir, 2 << 30)):
            await _diff_clean(debian_rootfs, mnt)
            got = await trio.to_thread.run_sync(snapshot, mnt)
            assert got == await trio.to_thread.run_sync(snapshot, debian_rootfs)
            proc = await trio.run_process(["chroot", str(mnt), "/bin/ls", "/etc/apt"],
                                          capture_stdout=True)
            assert b"sources.list" in proc.stdout or b"apt.conf.d" in proc.stdout
        # A second mount of the same image reads every block from the shared cache.
        async with mounted(data, mnt, Fetcher([server.url]),
                           BlockCache(cache_dir, 2 << 30)) as m:
            await _diff_clean(debian_rootfs, mnt)
            assert m.source.cache.stats.fetches == 0 and m.source.cache.stats.hits > 0
    assert str(mnt) not in Path("/proc/mounts").read_text()
