"""One cached block on disk, pure: magic "ZC1\\n" | xxh3-64(seed, block), 8 bytes BE | block.
xxh3 catches accidents (a flipped bit, a torn write) at memory speed; a deliberate rewrite
is BLAKE2b's to catch (`decode_block`)."""

import xxhash

from zosnode.cache.errors import CorruptEntry

MAGIC = b"ZC1\n"
DECODED = b"ZD1\n"  # in a trusted (RAM) cache only: the block decoded (`BlockCache`)
HEADER = len(MAGIC) + 8


def checksum(seed: int, block: bytes | memoryview) -> bytes:
    return xxhash.xxh3_64_digest(block, seed=seed)


def check(seed: int, block_id: str, header: bytes, block: bytes | memoryview) -> bytes | memoryview:
    """The block of an entry read as its header and its block (no copy), or CorruptEntry."""
    if len(header) < HEADER or not header.startswith(MAGIC):
        raise CorruptEntry(f"cache entry {block_id}: bad header")
    if checksum(seed, block) != header[len(MAGIC) :]:
        raise CorruptEntry(f"cache entry {block_id}: checksum mismatch")
    return block
