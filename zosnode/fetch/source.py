"""Decoded, verified blocks for the FUSE mount and the extract: hot set, cache, mirrors.

`decode_block` hashes a block against its id before it decrypts or decompresses a byte:
its one BLAKE2b (docs/datapath.md). A fetch is checked and decoded in one pass; a trusted
cache's copy is not hashed again, and may keep blocks decoded (`decoded_cache`: a later
mount maps and serves them as they are). Readers of a block share one decode."""

from collections import OrderedDict
from functools import partial

from zosnode.cache.store import BlockCache, Flights
from zosnode.fetch.fetcher import Fetcher
from zosnode.fetch.workers import cpu_limiter, on_cpu
from zosnode.flist.blocks import BlockRef, Buffer, decode_block, decode_verified
from zosnode.flist.errors import IntegrityError
from zosnode.layout import block_path, object_id


def checked_decode(ref: BlockRef, stored: Buffer) -> Buffer | None:
    """The decoded block, None for a wrong copy, IntegrityError for a wrong reference."""
    try:
        return decode_block(ref, stored)
    except IntegrityError:
        # Rare: a second hash to tell a lying mirror from a bad reference.
        if len(stored) == ref.stored_size and object_id(stored) == ref.id:
            raise
        return None


class BlockSource:
    """`cache` None: blocks come from the mirrors only (a one-off extract)."""

    def __init__(self, fetcher: Fetcher, cache: BlockCache | None, *,
                 hot_bytes: int = 64 * 1024 * 1024, decoded_cache: bool = False) -> None:
        self.fetcher, self.cache = fetcher, cache
        # The cache, when it keeps blocks decoded (trusted only): more RAM each, no work to read.
        self._decoded = cache if decoded_cache and cache is not None and cache.trusted else None
        self._hot: OrderedDict[str, Buffer] = OrderedDict()
        self._hot_used = 0
        self._hot_max = hot_bytes
        self._decoding = Flights()
        self.first_use: dict[str, None] = {}  # block ids in the order first asked for
        self.decodes = 0  # blocks loaded from the cache or the mirrors
        self.fetched_blocks = 0  # from the mirrors, and their stored bytes
        self.fetched_bytes = 0

    async def warm(self, ref: BlockRef) -> None:
        """Bring the block into the cache, in the form this source reads."""
        if self.cache is None or self._decoded is not None:
            await self.decoded(ref, record=False, keep=False)
        else:
            fetch = partial(self.fetcher.fetch_block, ref.id, max_size=ref.stored_size)
            await self.cache.get_or_fetch(ref.id, fetch)

    def is_hot(self, block_id: str) -> bool:
        """No fetch or decode needed (a tmpfs read costs less than a readahead task)."""
        return block_id in self._hot or (self._decoded is not None and block_id in self._decoded)

    async def decoded(self, ref: BlockRef, *, record: bool = True, keep: bool = True) -> Buffer:
        """The decoded block (`record`: a real read, not readahead; `keep`: in the hot set)."""
        if record:
            self.first_use.setdefault(ref.id, None)
        hot = self._hot.get(ref.id)
        if hot is not None:  # every read of a warm block: no more than this
            self._hot.move_to_end(ref.id)
            return hot
        if self._decoded is not None and ref.id in self._decoded:
            # Mapped at once, no flight (a block in flight is not in the index until put).
            hot = self._decoded.get(ref.id, decoded=True)
            if hot is not None:
                self.decodes += 1
                if keep:
                    self._keep(ref.id, hot)
                return hot

        async def look() -> Buffer | None:
            return self._hot.get(ref.id)

        async def work() -> Buffer:
            data = await self._load(ref)
            if keep:
                self._keep(ref.id, data)
            return data

        return await self._decoding.run(ref.id, work, look, looked=True)

    async def _load(self, ref: BlockRef) -> Buffer:
        self.decodes += 1
        got: list[Buffer] = []  # the decoded block, if this reader fetched it

        async def fetch() -> bytes:
            pair: tuple[bytes, Buffer] = await self.fetcher.fetch_checked(
                block_path(ref.id), ref.id, partial(checked_decode, ref), max_size=ref.stored_size)
            self.fetched_blocks += 1
            self.fetched_bytes += len(pair[0])
            got.append(pair[1])
            return pair[0]

        async def fetch_decoded() -> Buffer:
            await fetch()
            return got[0]

        if self.cache is None:
            return await fetch_decoded()
        if self._decoded is not None:
            # A hit is the decoded block, mapped; a miss is kept decoded.
            return await self._decoded.get_or_fetch(ref.id, fetch_decoded, decoded=True)
        # Read, checksummed, hashed and decoded in one worker (trusted: read and decoded).
        decode = decode_verified if self.cache.trusted else checked_decode
        data: Buffer | None = await self.cache.get_checked(ref.id, partial(decode, ref),
                                                            cpu_limiter())
        if data is not None:
            return data
        stored = await self.cache.get_or_fetch(ref.id, fetch, looked=True)
        if got:
            return got[0]
        # Another reader's fetch (a prefetch of the stored block) brought it.
        return await on_cpu(decode_block, ref, stored, size=ref.size)

    def _keep(self, bid: str, data: Buffer) -> None:
        if len(data) > self._hot_max or bid in self._hot:
            return
        self._hot[bid] = data
        self._hot_used += len(data)
        while self._hot_used > self._hot_max:
            _, old = self._hot.popitem(last=False)
            self._hot_used -= len(old)

    async def views(self, pieces: list[tuple[BlockRef | None, int, int]]) -> list[Buffer]:
        """(ref, start, length) pieces as views of decoded blocks; a None ref is zeros."""
        return [bytes(length) if ref is None
                else memoryview(await self.decoded(ref))[start : start + length]
                for ref, start, length in pieces]
