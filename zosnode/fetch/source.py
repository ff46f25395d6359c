"""Decoded, verified blocks for readers: a small RAM hot set, the cache, the mirrors.

This is what the FUSE mount and the eager extract read through. A block
comes from the hot set of decoded blocks (process memory), else from the
block cache (checksummed), else from the fetcher (hash-checked); it is then
decoded by the flist layer, which checks the hash again before it decrypts or
decompresses. A cached copy that fails that check is dropped and fetched anew.
"""

from __future__ import annotations

from collections import OrderedDict

import trio

from zosnode.cache.store import BlockCache
from zosnode.fetch.fetcher import Fetcher
from zosnode.flist.blocks import BlockRef, decode_block
from zosnode.flist.errors import IntegrityError

# Decoding a large block (hash, decrypt, decompress) goes to a thread so the
# event loop keeps serving other reads; tiny ones are cheaper inline.
_THREAD_OVER = 256 * 1024


class BlockSource:
    def __init__(
        self, fetcher: Fetcher, cache: BlockCache, *, hot_bytes: int = 64 * 1024 * 1024
    ) -> None:
        self.fetcher = fetcher
        self.cache = cache
        self._hot: OrderedDict[str, bytes] = OrderedDict()
        self._hot_used = 0
        self._hot_max = hot_bytes
        self.first_use: dict[str, None] = {}  # block ids in the order first asked for

    async def stored(self, ref: BlockRef) -> bytes:
        """The block's stored bytes, from the cache or a mirror (verified)."""

        async def fetch() -> bytes:
            return await self.fetcher.fetch_block(ref.id, max_size=ref.stored_size)

        return await self.cache.get_or_fetch(ref.id, fetch)

    def is_hot(self, block_id: str) -> bool:
        return block_id in self._hot

    async def decoded(self, ref: BlockRef, *, record: bool = True) -> bytes:
        """The whole decoded block `ref` names (`record`: a real read, not readahead)."""
        if record:
            self.first_use.setdefault(ref.id, None)
        hot = self._hot.get(ref.id)
        if hot is not None:
            self._hot.move_to_end(ref.id)
            return hot
        for attempt in (0, 1):
            stored = await self.stored(ref)
            try:
                if len(stored) > _THREAD_OVER:
                    data = await trio.to_thread.run_sync(decode_block, ref, stored)
                else:
                    data = decode_block(ref, stored)
                break
            except IntegrityError:
                # The fetcher checked the hash, so this copy came from the
                # cache and was damaged there (or a size lie): drop, refetch.
                self.cache.discard(ref.id)
                if attempt:
                    raise
        self._keep(ref.id, data)
        return data

    def _keep(self, bid: str, data: bytes) -> None:
        if len(data) > self._hot_max:
            return
        self._hot[bid] = data
        self._hot_used += len(data)
        while self._hot_used > self._hot_max:
            _, old = self._hot.popitem(last=False)
            self._hot_used -= len(old)

    async def read(self, pieces: list[tuple[BlockRef | None, int, int]]) -> bytes:
        """Concatenate (ref, start, length) pieces; a None ref is a run of zeros."""
        out = []
        for ref, start, length in pieces:
            if ref is None:
                out.append(bytes(length))
            else:
                out.append((await self.decoded(ref))[start : start + length])
        return b"".join(out)
