"""The on-disk form of one cached block: a checksummed envelope, pure code.

    magic "ZC1\\n" | xxh3-64(seed, block) as 8 big-endian bytes | block

The xxh3 sum catches accidental corruption (a flipped bit, a torn write) on
every read at memory speed. It is no defence against someone who rewrites the
medium on purpose: that is caught by BLAKE2b-256, which the flist layer's
`decode_block` checks before a byte of a block is used. A damaged entry is
dropped and its block fetched again.
"""

from __future__ import annotations

import xxhash

from zosnode.cache.errors import CorruptEntry

MAGIC = b"ZC1\n"
# In a trusted (RAM) cache only: the entry holds the block decoded (`BlockCache`).
DECODED = b"ZD1\n"
HEADER = len(MAGIC) + 8


def checksum(seed: int, block: bytes | memoryview) -> bytes:
    return xxhash.xxh3_64_digest(block, seed=seed)


def encode(seed: int, block: bytes, magic: bytes = MAGIC) -> bytes:
    return magic + checksum(seed, block) + block


def decode(seed: int, block_id: str, data: bytes) -> bytes | memoryview:
    """The block held by `data`, or CorruptEntry."""
    return check(seed, block_id, data[:HEADER], data[HEADER:])


def check(seed: int, block_id: str, header: bytes, block: bytes | memoryview) -> bytes | memoryview:
    """`decode` of an entry read as its header and its block (no copy of the block)."""
    if len(header) < HEADER or not header.startswith(MAGIC):
        raise CorruptEntry(f"cache entry {block_id}: bad header")
    if checksum(seed, block) != header[len(MAGIC) :]:
        raise CorruptEntry(f"cache entry {block_id}: checksum mismatch")
    return block
