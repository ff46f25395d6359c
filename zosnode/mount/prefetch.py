"""The boot-order prefetch hint: follow it after mount, record it from a run.

An flist may list block ids in the order a boot first read them. Right after
the mount is live we fetch them in that order (a few in parallel) into the
cache, so the common boot path is local before it is read. (Recording the
order is `flist record-prefetch`'s, with `zosnode.flist.writer.with_hint`.)
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from zosnode.fetch.errors import FetchError
from zosnode.fetch.source import BlockSource
from zosnode.flist.errors import FlistError
from zosnode.flist.format import Flist


@dataclass
class PrefetchReport:
    wanted: int = 0
    fetched: int = 0
    failed: int = 0


async def follow_hint(
    source: BlockSource, flist: Flist, report: PrefetchReport, *, parallel: int = 4
) -> None:
    """Warm the cache with the hinted blocks, in order, `parallel` at a time."""
    refs = flist.blocks()
    ids = [b for b in flist.prefetch if b in refs]
    report.wanted = len(ids)
    limit = trio.Semaphore(parallel)

    async def one(bid: str) -> None:
        try:
            with trio.move_on_after(source.fetcher.deadline_s):
                await source.warm(refs[bid])
                report.fetched += 1
                return
        except (FetchError, FlistError):
            pass
        finally:
            limit.release()
        report.failed += 1

    async with trio.open_nursery() as nursery:
        for bid in ids:
            # Acquire before spawning, so blocks start in hint order.
            await limit.acquire()
            nursery.start_soon(one, bid)

