"""The on-disk form of one cached block: a checksummed envelope, pure code.

    magic "ZC1\\n" | xxh3-64(seed, block) as 8 big-endian bytes | block

The xxh3 sum catches accidental corruption (a flipped bit, a torn write) on
every read at memory speed. It is no defence against someone who rewrites the
medium on purpose: that is caught by BLAKE2b-256, which the flist layer's
`decode_block` checks before a byte of a block is used. An entry whose sum
is damaged but whose block still hashes to its id is accepted (FULL) and
rewritten by the cache.
"""

from __future__ import annotations

from enum import Enum

import xxhash

from zosnode.cache.errors import CorruptEntry
from zosnode.layout import object_id

MAGIC = b"ZC1\n"
HEADER = len(MAGIC) + 8


class Check(Enum):
    FAST = "fast"  # keyed xxh3 matched
    FULL = "full"  # xxh3 did not, BLAKE2b of the block matched its id: rewrite


def checksum(seed: int, block: bytes | memoryview) -> bytes:
    return xxhash.xxh3_64_digest(block, seed=seed)


def encode(seed: int, block: bytes) -> bytes:
    return MAGIC + checksum(seed, block) + block


def decode(seed: int, block_id: str, data: bytes) -> tuple[bytes, Check]:
    """The block held by `data`, or CorruptEntry if it fails both checks."""
    return check(seed, block_id, data[:HEADER], data[HEADER:])


def check(seed: int, block_id: str, header: bytes, block: bytes) -> tuple[bytes, Check]:
    """`decode` of an entry read as its header and its block (no copy of the block)."""
    if len(header) < HEADER or not header.startswith(MAGIC):
        raise CorruptEntry(f"cache entry {block_id}: bad header")
    if checksum(seed, block) == header[len(MAGIC) : HEADER]:
        return block, Check.FAST
    if object_id(block) == block_id:
        return block, Check.FULL
    raise CorruptEntry(f"cache entry {block_id}: checksum mismatch")
