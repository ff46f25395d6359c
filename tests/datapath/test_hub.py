"""The real hub (zosnode.hub) as the mirror: a mount and an eager extract from it."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import trio

from tests.datapath.conftest import build_flist, make_tree
from tests.datapath.fuse import require_fuse, snapshot
from zosnode.cache.store import BlockCache
from zosnode.cli.flist_remote import mounted
from zosnode.fetch.eager import extract_from_hubs
from zosnode.fetch.fetcher import Fetcher
from zosnode.hub.service import run_hub
from zosnode.hub.storage import LocalStorage


async def test_mount_and_extract_from_the_hub(tmp_path: Path, data_dir: Path) -> None:
    require_fuse()
    src = make_tree(tmp_path / "src")
    _, fid = build_flist(src, data_dir)
    async with trio.open_nursery() as nursery:
        hub = await nursery.start(partial(run_hub, LocalStorage(str(data_dir)), "127.0.0.1:0"))
        fetcher = Fetcher([hub.url])
        raw = await fetcher.fetch_flist(fid, max_size=1 << 20)
        (tmp_path / "mnt").mkdir()
        async with mounted(raw, tmp_path / "mnt", fetcher, BlockCache(tmp_path / "c", 1 << 30)):
            got = await trio.to_thread.run_sync(snapshot, tmp_path / "mnt")
        assert got == snapshot(src)
        await extract_from_hubs(raw, tmp_path / "out", Fetcher([hub.url]),
                                BlockCache(tmp_path / "c2", 1 << 30), parallel=4)
        assert snapshot(tmp_path / "out") == snapshot(src)
        hub.server.shutdown()
        nursery.cancel_scope.cancel()
