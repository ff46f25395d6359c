"""The one extract engine: an flist from hubs into a directory, pipelined, in bounded memory.

`extract_blocks` writes in a thread, asking for blocks in `read_order`, while a feed fetches
them in that order, `parallel` at a time, decoded on the CPU workers, holding at most
`ahead_bytes` not yet written (a larger block goes alone) until their last use. A block
over its stored size is cut off at it: the writer fails with the fetch's error."""

import os
import threading
from collections.abc import Callable
from functools import partial

import trio

from zosnode.cache.store import own_copy
from zosnode.fetch.source import BlockSource
from zosnode.flist.blocks import BlockRef, Buffer
from zosnode.flist.materialize import extract_blocks, read_order
from zosnode.flist.view import FlistView


class _Feed:
    """The writer's `DecodedBlocks`, asked in `order` (`read_order` is the writer's walk): `block`,
    in its thread, waits on a lock, not on a hop into trio (one a block cost half the extract)."""

    def __init__(self, source: BlockSource, order: list[BlockRef], ahead_bytes: int) -> None:
        self.source, self.order, self.ahead_bytes = source, order, ahead_bytes
        self.held = 0  # decoded bytes fetched or in flight, not yet used up
        self.peak = 0  # the most `held` was (tests check the bound)
        # Under `_ready`, with `held`: uses counted not yet taken, and blocks fetched (one in
        # `_got` when the writer reaches it has that use counted: all earlier ones are taken).
        self._ready = threading.Condition()
        self._uses: dict[str, int] = {}
        self._got: dict[str, Buffer | Exception] = {}
        self._moved = trio.Event()  # the writer used a block up
        self._token = trio.lowlevel.current_trio_token()
        self._last: tuple[str, Buffer] | None = None  # the writer's last block

    def _poke(self) -> None:
        self._moved.set()
        self._moved = trio.Event()

    async def run(self, parallel: int) -> None:
        limit = trio.Semaphore(parallel)
        async with trio.open_nursery() as nursery:
            for ref in self.order:
                with self._ready:
                    if ref.id in self._uses:  # held already, for a later use too
                        self._uses[ref.id] += 1
                        continue
                # Over budget: wait for the writer, unless nothing is held.
                while self.held and self.held + ref.size > self.ahead_bytes:
                    await self._moved.wait()
                await limit.acquire()
                with self._ready:
                    self._uses[ref.id] = 1
                    self.held += ref.size
                self.peak = max(self.peak, self.held)
                nursery.start_soon(self._one, ref, limit)

    async def _one(self, ref: BlockRef, limit: trio.Semaphore) -> None:
        try:
            got: Buffer | Exception = await self.source.decoded(ref, record=False, keep=False)
        except Exception as exc:  # noqa: BLE001 - raised in the writer, which reports it
            got = exc
        finally:
            limit.release()
        with self._ready:
            self._got[ref.id] = got
            self._ready.notify()

    def block(self, ref: BlockRef) -> Buffer:
        # Consecutive pieces of one block (packed small files) take it once, as `read_order`.
        if self._last is not None and self._last[0] == ref.id:
            return self._last[1]
        with self._ready:
            while ref.id not in self._got:
                self._ready.wait(0.1)
                trio.from_thread.check_cancelled()  # a cancelled extract (the feed too) stops
            got = self._got[ref.id]
            self._uses[ref.id] -= 1
            if not self._uses[ref.id]:
                del self._uses[ref.id], self._got[ref.id]
                self.held -= ref.size
                self._token.run_sync_soon(self._poke)
        if isinstance(got, Exception):
            raise own_copy(got)
        self._last = (ref.id, got)
        return got


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
