"""Eager mode: materialise an flist from hubs into a directory (`flist extract --hub`).

The work is the data path's one extract engine, `zosnode.fetch.pipeline`
(the node's extraction fallback uses it too): blocks fetched in the order the
writer needs them, several at a time, hashed and decoded in one pass on every
core, at most `ahead_bytes` of them in memory.
"""

import os
from collections.abc import Callable

from zosnode.cache.store import BlockCache
from zosnode.fetch.fetcher import Fetcher
from zosnode.fetch.pipeline import extract_view
from zosnode.fetch.source import BlockSource
from zosnode.flist.view import FlistView


async def extract_from_hubs(
    flist_bytes: bytes,
    target: str | os.PathLike[str],
    fetcher: Fetcher,
    cache: BlockCache | None,
    *,
    parallel: int = 8,
    ahead_bytes: int = 64 * 1024 * 1024,
    progress: Callable[[int, int], None] | None = None,
    skipped: list[str] | None = None,
) -> int:
    """`extract_view` of an flist (already checked against its id) through
    `cache` (None: straight from the mirrors)."""
    return await extract_view(
        FlistView.from_bytes(flist_bytes), target, BlockSource(fetcher, cache, hot_bytes=0),
        parallel=parallel, ahead_bytes=ahead_bytes, progress=progress, skipped=skipped)
