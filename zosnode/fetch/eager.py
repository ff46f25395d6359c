"""Eager mode: materialise an flist from hubs into a directory, in parallel.

The flist layer's `extract` does the writing (safe paths, attributes,
hardlinks) from a synchronous block source, in a worker thread. Here,
meanwhile, a pipeline fetches blocks in the order extract will want them
(the flist's block table is in first-use order) several at a time into the
cache, staying at most `ahead_bytes` in front of the writer. Every block is
hash-checked by the fetcher and again by `decode_block` before it is written.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from itertools import accumulate

import trio

from zosnode.cache.store import BlockCache
from zosnode.fetch.fetcher import Fetcher
from zosnode.fetch.source import BlockSource
from zosnode.flist.blocks import BlockRef
from zosnode.flist.extract import extract
from zosnode.flist.view import FlistView


class _Pipeline:
    """Blocks fetched ahead of a synchronous reader running in a thread."""

    def __init__(self, source: BlockSource, order: list[BlockRef], ahead_bytes: int) -> None:
        self.source = source
        self.order = order
        self.position = {r.id: i for i, r in enumerate(order)}
        self.prefix = [0, *accumulate(r.stored_size for r in order)]
        self.ahead_bytes = ahead_bytes
        self.consumed = 0
        self._moved = trio.Event()

    async def run(self, parallel: int) -> None:
        limit = trio.Semaphore(parallel)

        async def one(ref: BlockRef) -> None:
            try:
                # Errors surface when the writer asks for the block itself.
                with trio.move_on_after(self.source.fetcher.deadline_s):
                    await self.source.stored(ref)
            except Exception:  # noqa: BLE001 - a hint only; the writer reports failures
                pass
            finally:
                limit.release()

        async with trio.open_nursery() as nursery:
            for i, ref in enumerate(self.order):
                while self.prefix[i] - self.prefix[self.consumed] > self.ahead_bytes:
                    await self._moved.wait()
                await limit.acquire()
                nursery.start_soon(one, ref)

    async def get(self, ref: BlockRef) -> bytes:
        i = self.position.get(ref.id, 0)
        if i > self.consumed:
            self.consumed = i
            self._moved.set()
            self._moved = trio.Event()
        return await self.source.stored(ref)

    def get_sync(self, ref: BlockRef) -> bytes:
        """The extract thread's block source."""
        return trio.from_thread.run(self.get, ref)


class _SyncSource:
    def __init__(self, pipeline: _Pipeline) -> None:
        self._pipeline = pipeline

    def get(self, ref: BlockRef) -> bytes:
        return self._pipeline.get_sync(ref)


async def extract_from_hubs(
    flist_bytes: bytes,
    target: str | os.PathLike[str],
    fetcher: Fetcher,
    cache: BlockCache,
    *,
    parallel: int = 8,
    ahead_bytes: int = 128 * 1024 * 1024,
    progress: Callable[[int, int], None] | None = None,
    skipped: list[str] | None = None,
) -> int:
    """Write the whole image into `target` (absent or empty); return bytes written."""
    view = FlistView.from_bytes(flist_bytes)
    source = BlockSource(fetcher, cache, hot_bytes=0)
    pipeline = _Pipeline(source, list(view.flist.blocks().values()), ahead_bytes)
    written = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pipeline.run, parallel)

        def work() -> int:
            return extract(view, _SyncSource(pipeline), target, progress=progress,
                           skipped=skipped)

        written = await trio.to_thread.run_sync(work)
        nursery.cancel_scope.cancel()
    return written
