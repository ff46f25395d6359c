"""The one extract engine: an flist from hubs into a directory, pipelined, in bounded memory.

`extract_blocks` writes in a thread, asking for blocks in `read_order`, while a feed
fetches them in that order, `parallel` at a time, decoded on the CPU workers, holding at
most `ahead_bytes` not yet written (a larger block goes alone) until their last use. A
block over its stored size is cut off at it: the writer fails with the fetch's error."""

import os
from collections.abc import Callable
from functools import partial

import trio

from zosnode.cache.store import own_copy
from zosnode.fetch.source import BlockSource
from zosnode.flist.blocks import BlockRef, Buffer
from zosnode.flist.materialize import extract_blocks, read_order
from zosnode.flist.view import FlistView


class _Feed:
    """The writer's `DecodedBlocks`: `block` runs in its thread, one hop into trio a block."""

    def __init__(self, source: BlockSource, order: list[BlockRef], ahead_bytes: int) -> None:
        self.source = source
        self.order = order
        self.ahead_bytes = ahead_bytes
        self.held = 0  # decoded bytes fetched or in flight, not yet used up
        self.peak = 0  # the most `held` was (tests check the bound)
        self._pos = 0  # the writer's position in `order`
        self._scheduled = 0  # the feed's
        self._uses: dict[str, int] = {}  # scheduled uses not yet taken
        self._done: dict[str, trio.Event] = {}
        self._got: dict[str, Buffer | Exception] = {}
        self._moved = trio.Event()  # the writer took a block, or the feed scheduled one
        self._last: tuple[str, Buffer] | None = None  # the writer's last block

    def _poke(self) -> None:
        self._moved.set()
        self._moved = trio.Event()

    async def run(self, parallel: int) -> None:
        limit = trio.Semaphore(parallel)
        async with trio.open_nursery() as nursery:
            for ref in self.order:
                if ref.id in self._uses:
                    self._uses[ref.id] += 1  # held already, for a later use too
                else:
                    # Over budget: wait for the writer, unless nothing is held.
                    while self.held and self.held + ref.size > self.ahead_bytes:
                        await self._moved.wait()
                    await limit.acquire()
                    self._uses[ref.id] = 1
                    self._done[ref.id] = trio.Event()
                    self.held += ref.size
                    self.peak = max(self.peak, self.held)
                    nursery.start_soon(self._one, ref, limit)
                self._scheduled += 1
                self._poke()

    async def _one(self, ref: BlockRef, limit: trio.Semaphore) -> None:
        try:
            self._got[ref.id] = await self.source.decoded(ref, record=False, keep=False)
        except Exception as exc:  # noqa: BLE001 - raised in the writer, which reports it
            self._got[ref.id] = exc
        finally:
            limit.release()
            self._done[ref.id].set()

    async def take(self, ref: BlockRef) -> Buffer:
        """The writer's next block (off the expected order: fetched for it alone)."""
        pos = self._pos
        if pos >= len(self.order) or self.order[pos].id != ref.id:
            return await self.source.decoded(ref, record=False, keep=False)
        self._pos += 1
        while self._scheduled <= pos:
            await self._moved.wait()
        await self._done[ref.id].wait()
        got = self._got[ref.id]
        self._uses[ref.id] -= 1
        if not self._uses[ref.id]:
            del self._uses[ref.id], self._done[ref.id], self._got[ref.id]
            self.held -= ref.size
            self._poke()
        if isinstance(got, Exception):
            raise own_copy(got)
        return got

    def block(self, ref: BlockRef) -> Buffer:
        # Consecutive pieces of one block (packed small files) take it once, as `read_order`.
        if self._last is not None and self._last[0] == ref.id:
            return self._last[1]
        data = trio.from_thread.run(self.take, ref)
        self._last = (ref.id, data)
        return data


async def extract_view(
    view: FlistView, target: str | os.PathLike[str], source: BlockSource, *,
    parallel: int = 8, ahead_bytes: int = 64 * 1024 * 1024,
    progress: Callable[[int, int], None] | None = None, skipped: list[str] | None = None,
) -> int:
    """Write the whole image into `target` (absent or empty) from `source`; bytes written."""
    feed = _Feed(source, read_order(view), ahead_bytes)
    work = partial(extract_blocks, view, feed, target, progress=progress, skipped=skipped)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed.run, parallel)
            written = await trio.to_thread.run_sync(work)
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # Only the writer fails (it gets the feed's errors): raise its own, as flist extract does.
        if len(group.exceptions) == 1 and isinstance(group.exceptions[0], Exception):
            raise group.exceptions[0] from None
        raise
    return written
