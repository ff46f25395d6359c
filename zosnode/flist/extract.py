"""Extract an flist from a local store, and read blocks from one (sync front ends).

A node never reads a local store: its extracts are `zosnode.fetch.pipeline`'s,
over `zosnode.flist.materialize`, which writes for both. Every block is
verified (`decode_block`) before a byte of it is used.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from zosnode.flist.blocks import BlockRef, Buffer, decode_block
from zosnode.flist.materialize import DecodedBlocks, extract_blocks, read_order
from zosnode.flist.view import FlistView

__all__ = ["BlockReader", "DecodedBlocks", "StoredBlocks", "extract", "extract_blocks",
           "read_order"]


class StoredBlocks(Protocol):
    """Where a sync front end reads blocks from: a local store, or memory in tests.
    (The node's async reader of verified decoded blocks is `zosnode.fetch.source.BlockSource`.)"""

    def get(self, ref: BlockRef) -> bytes:
        """The STORED bytes of the block `ref` names; the caller verifies them."""
        ...


class BlockReader:
    """Verified decoded blocks from a source, with a small LRU for packed blocks."""

    def __init__(self, source: StoredBlocks, keep: int = 8) -> None:
        self.source = source
        self.keep = keep
        self._lru: OrderedDict[str, Buffer] = OrderedDict()
        self.fetched = 0

    def block(self, ref: BlockRef) -> Buffer:
        data = self._lru.get(ref.id)
        if data is not None:
            self._lru.move_to_end(ref.id)
            return data
        data = decode_block(ref, self.source.get(ref))
        self.fetched += 1
        self._lru[ref.id] = data
        if len(self._lru) > self.keep:
            self._lru.popitem(last=False)
        return data


def extract(
    view: FlistView,
    source: StoredBlocks,
    target: str | os.PathLike[str],
    *,
    progress: Callable[[int, int], None] | None = None,
    skipped: list[str] | None = None,
) -> int:
    """Write the whole image into `target` (absent or empty); return bytes written.

    See `extract_blocks`.
    """
    return extract_blocks(view, BlockReader(source), target, progress=progress,
                          skipped=skipped)
