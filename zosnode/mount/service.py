"""Mount an flist at a directory while a trio task runs; pyfuse3 allows one per process (a
second runs in another process, and may share the cache directory)."""

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyfuse3
import trio

from zosnode.cache.store import BlockCache
from zosnode.fetch.errors import FetchError
from zosnode.fetch.fetcher import Fetcher
from zosnode.fetch.source import BlockSource
from zosnode.flist.errors import FlistError
from zosnode.flist.view import FlistView
from zosnode.mount.errors import InvalidFlist, MountFailed, MountpointUnusable, MountUsageError
from zosnode.mount.fs import MAX_READ, READAHEAD_BYTES, FlistFS
from zosnode.mount.mountpoint import recover_stale

_live = False


@dataclass
class PrefetchReport:
    wanted: int = 0
    fetched: int = 0  # of `wanted`, within the deadline


@dataclass
class MountedFlist:
    view: FlistView
    source: BlockSource
    fs: FlistFS
    prefetch: PrefetchReport = field(default_factory=PrefetchReport)
    prefetch_done: trio.Event = field(default_factory=trio.Event)


async def serve_flist(
    flist_bytes: bytes, mountpoint: str | os.PathLike[str], fetcher: Fetcher,
    cache: BlockCache, *, prefetch: bool = True, hot_bytes: int = 64 * 1024 * 1024,
    task_status: trio.TaskStatus[MountedFlist] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the flist (the caller checked its id) until cancelled or unmounted from outside."""
    global _live
    mp = Path(mountpoint)
    try:
        view = FlistView.from_bytes(flist_bytes)
    except FlistError as exc:
        raise InvalidFlist(f"not a valid flist: {exc}") from None
    recover_stale(mp)
    if not mp.is_dir():
        raise MountpointUnusable(f"{mp} is not a directory")
    if os.path.ismount(mp):
        raise MountpointUnusable(f"{mp} is already a mount point")
    if _live:
        raise MountUsageError("this process already serves a FUSE mount (pyfuse3 allows one)")
    source = BlockSource(fetcher, cache, hot_bytes=hot_bytes, decoded_cache=True)
    async with trio.open_nursery() as background:
        limit = trio.CapacityLimiter(4)
        # Readahead lands in the hot set: past a quarter of it, it evicts itself before read.
        fs = FlistFS(view, source, spawn=lambda fn: background.start_soon(_limited, limit, fn),
                     readahead_bytes=min(READAHEAD_BYTES, max(hot_bytes // 4, 1)))
        # Reads up to MAX_READ (libfuse's max_pages); page cache kept (no direct_io): mmap
        # works. No max_read: libfuse refuses one pyfuse3's init() does not repeat.
        opts = {"ro", "fsname=zosnode", "subtype=flist", "default_permissions"}
        if os.geteuid() == 0:
            opts.add("allow_other")
        try:
            pyfuse3.init(fs, os.fspath(mp), opts)
        except RuntimeError as exc:
            raise MountFailed(f"cannot mount at {mp}: {exc}") from None
        _live = True
        try:
            handle = MountedFlist(view, source, fs)
            # pyfuse3.main and its workers must be gone before close() frees the session.
            async with trio.open_nursery() as session:

                async def run_main() -> None:
                    await pyfuse3.main()  # returns when unmounted from outside: over
                    session.cancel_scope.cancel()

                session.start_soon(run_main)
                await _raise_readahead(mp)  # first: an earlier open keeps the old window
                if prefetch and view.flist.prefetch:
                    session.start_soon(_prefetch, handle)
                else:
                    handle.prefetch_done.set()
                task_status.started(handle)
        finally:
            _live = False
            pyfuse3.close(unmount=True)
            background.cancel_scope.cancel()


async def _raise_readahead(mp: Path) -> None:
    """Let the kernel read ahead (so ask) MAX_READ at once: a FUSE bdi starts at 128 KiB and INIT
    only lowers it, so sysfs raises it once a stat (in a thread: we answer it) shows INIT done."""
    # OSError: not root, or no sysfs: 128 KiB reads, the same bytes.
    with trio.move_on_after(10), contextlib.suppress(OSError):
        st = await trio.to_thread.run_sync(os.stat, mp, abandon_on_cancel=True)
        knob = Path(f"/sys/class/bdi/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/read_ahead_kb")
        knob.write_text(str(MAX_READ // 1024))


async def _prefetch(handle: MountedFlist) -> None:
    """Warm the cache with the boot-order hint (`flist record-prefetch`), in order, 4 at once."""
    refs = handle.view.flist.blocks()
    ids = handle.view.flist.prefetch  # decode checked each is in the block table
    source, report = handle.source, handle.prefetch
    report.wanted = len(ids)
    limit = trio.Semaphore(4)

    async def one(bid: str) -> None:
        try:
            with trio.move_on_after(source.fetcher.deadline_s):
                await source.warm(refs[bid])
                report.fetched += 1
        except (FetchError, FlistError):
            pass
        finally:
            limit.release()

    try:
        async with trio.open_nursery() as nursery:
            for bid in ids:
                await limit.acquire()  # before spawning: blocks start in hint order
                nursery.start_soon(one, bid)
    finally:
        handle.prefetch_done.set()


async def _limited(limit: trio.CapacityLimiter, fn: Callable[[], Any]) -> None:
    async with limit:
        await fn()
