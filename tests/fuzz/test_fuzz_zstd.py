"""Fuzz target `zstd-block`: a node decoding a zstd block it was handed.

An input is `size (2 bytes, little endian, plus 1) || stored bytes`: the size a
block reference promises and the bytes a hostile builder or hub gives for it,
under their own id (the hash check passes, so the decoder itself is what is
tested). Property: the bytes are refused with `IntegrityError`, or accepted
as exactly `size` bytes, which the reference decoder (`zstd.decompress`,
unbounded, run only on accepted input) agrees with. The bound itself is the
decoder's: it never asks zstd for more than size + 1 bytes, and refuses a
window past the largest block, so no input makes it allocate more.
"""

from __future__ import annotations

import os

from hypothesis import strategies as st

from tests.fuzz.budget import Target, fuzz, replay
from tests.fuzz.mutate import havoc, mutated
from zosnode.flist.blocks import BlockRef, Compression, block_id, decode_block, zstd
from zosnode.flist.errors import IntegrityError


def check_zstd_block(data: bytes) -> None:
    if len(data) < 3:
        return
    size = 1 + int.from_bytes(data[:2], "little")
    stored = data[2:]
    ref = BlockRef(block_id(stored), 0, 1, size, len(stored), Compression.ZSTD)
    try:
        out = decode_block(ref, stored)
    except IntegrityError:
        return
    assert len(out) == size
    assert zstd.decompress(stored) == out


ZSTD_BLOCK = Target("zstd-block", check_zstd_block)


def _seed(decoded: bytes, level: int = 3) -> bytes:
    return (len(decoded) - 1).to_bytes(2, "little") + zstd.compress(decoded, level=level)


SEEDS = [
    _seed(b"flist block bytes " * 200),
    _seed(bytes(60000)),  # a tiny frame for many bytes: the bomb's shape
    _seed(os.urandom(300) * 20, level=19),
    _seed(b"x"),
    # Two frames back to back: trailing data, refused.
    (99).to_bytes(2, "little") + zstd.compress(b"a" * 50) + zstd.compress(b"b" * 50),
]

test_zstd_block_regressions = replay(ZSTD_BLOCK)
test_zstd_block_mutated = fuzz(ZSTD_BLOCK, mutated(SEEDS))
test_zstd_block_havoc = fuzz(ZSTD_BLOCK, havoc(SEEDS))
test_zstd_block_raw = fuzz(ZSTD_BLOCK, st.binary(max_size=256))


def test_seeds_decode() -> None:
    for seed in SEEDS[:4]:
        size = 1 + int.from_bytes(seed[:2], "little")
        stored = seed[2:]
        ref = BlockRef(block_id(stored), 0, 1, size, len(stored), Compression.ZSTD)
        assert len(decode_block(ref, stored)) == size
