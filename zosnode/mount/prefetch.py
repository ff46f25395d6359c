"""The boot-order prefetch hint: follow it after mount, record it from a run.

An flist may list block ids in the order a boot first read them. Right after
the mount is live we fetch them in that order (a few in parallel) into the
cache, so the common boot path is local before it is read. Recording is the
reverse: mount, run something, and keep the order in which blocks were first
asked for.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import trio

from zosnode.fetch.errors import FetchError
from zosnode.fetch.source import BlockSource
from zosnode.flist.errors import FlistError
from zosnode.flist.format import Flist, encode


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
                await source.stored(refs[bid])
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


def with_hint(flist: Flist, order: list[str]) -> bytes:
    """The flist re-encoded with `order` (blocks first read, in order) as its hint."""
    known = flist.blocks()
    hint = tuple(dict.fromkeys(b for b in order if b in known))
    return encode(dataclasses.replace(flist, prefetch=hint))
