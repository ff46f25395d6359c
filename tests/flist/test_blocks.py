"""Blocks: verified before anything is decrypted or decompressed."""

from __future__ import annotations

import dataclasses
import os
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zosnode.flist.blocks import (
    BlockRef,
    Compression,
    block_id,
    decode_block,
    zstd,
)
from zosnode.flist.errors import FormatError, IntegrityError
from zosnode.flist.writer import encode_block

DATA = b"flist block bytes " * 1000


@pytest.mark.parametrize("compression", list(Compression))
@pytest.mark.parametrize("encrypt", [False, True])
def test_round_trip(compression: Compression, encrypt: bool) -> None:
    b = encode_block(DATA, compression, encrypt)
    assert b.id == block_id(b.stored)
    ref = b.ref(18, 100)
    assert decode_block(ref, b.stored) == DATA
    assert decode_block(ref, b.stored)[ref.offset : ref.offset + ref.length] == DATA[18:118]
    if encrypt:
        assert b.key is not None and b"flist block" not in b.stored
    # Deterministic: the same bytes always give the same block.
    assert encode_block(DATA, compression, encrypt) == b


def test_incompressible_is_stored_raw() -> None:
    data = os.urandom(10000)
    b = encode_block(data, Compression.ZLIB, False)
    assert b.compression is Compression.NONE and b.stored == data


@pytest.mark.parametrize("encrypt", [False, True])
def test_tampered_block_refused_before_decoding(encrypt: bool) -> None:
    b = encode_block(DATA, Compression.ZLIB, encrypt)
    ref = b.ref(0, 10)
    for i in (0, len(b.stored) // 2, len(b.stored) - 1):
        bad = bytearray(b.stored)
        bad[i] ^= 1
        with pytest.raises(IntegrityError, match="does not match its hash"):
            decode_block(ref, bytes(bad))
    with pytest.raises(IntegrityError):
        decode_block(ref, b.stored[:-1])
    with pytest.raises(IntegrityError):
        decode_block(ref, b.stored + b"x")


def test_wrong_key_refused() -> None:
    b = encode_block(DATA, Compression.NONE, True)
    ref = dataclasses.replace(b.ref(0, 10), key=bytes(32))
    with pytest.raises(IntegrityError, match="decrypt"):
        decode_block(ref, b.stored)


def test_decompression_bomb_bounded() -> None:
    # A block that hashes right but inflates past the size its reference promises.
    bomb = zlib.compress(bytes(8 * 1024 * 1024))
    ref = BlockRef(block_id(bomb), 0, 10, 1024, len(bomb), Compression.ZLIB)
    with pytest.raises(IntegrityError):
        decode_block(ref, bomb)


def test_short_stream_refused() -> None:
    body = zlib.compress(DATA)[:-4]
    ref = BlockRef(block_id(body), 0, 10, len(DATA), len(body), Compression.ZLIB)
    with pytest.raises(IntegrityError):
        decode_block(ref, body)


def test_refs_validated_when_built() -> None:
    bid = "0" * 64
    with pytest.raises(FormatError):
        BlockRef(bid, 10, 10, 15, 15, Compression.NONE)
    with pytest.raises(FormatError):
        BlockRef("ABC", 0, 1, 1, 1, Compression.NONE)
    with pytest.raises(FormatError):
        BlockRef(bid, 0, 1, 1, 1, Compression.NONE, key=b"short")
    with pytest.raises(FormatError):
        BlockRef(bid, 0, 1, 9 * 1024 * 1024, 1, Compression.NONE)


@given(st.integers(-2, 20), st.integers(-2, 20))
def test_a_slice_is_the_ref_the_constructor_builds_or_refused_as_it(offset: int, length: int
                                                                    ) -> None:
    # The decoder's shortcut: every field but the slice comes from a ref already checked.
    block = BlockRef("ab" * 32, 0, 1, 15, 12, Compression.ZSTD, bytes(32))
    try:
        built: BlockRef | Exception = BlockRef("ab" * 32, offset, length, 15, 12,
                                               Compression.ZSTD, bytes(32))
    except FormatError as exc:
        built = exc
    try:
        sliced: BlockRef | Exception = block.slice(offset, length)
    except FormatError as exc:
        sliced = exc
    if isinstance(built, Exception):
        assert isinstance(sliced, FormatError) and str(sliced) == str(built)
    else:
        assert sliced == built and hash(sliced) == hash(built) and vars(sliced) == vars(built)
        with pytest.raises(dataclasses.FrozenInstanceError):
            sliced.offset = 0  # type: ignore[misc]


@given(st.binary(min_size=1, max_size=4096), st.sampled_from(list(Compression)), st.booleans())
def test_property_round_trip(data: bytes, compression: Compression, encrypt: bool) -> None:
    b = encode_block(data, compression, encrypt)
    assert decode_block(b.ref(0, len(data)), b.stored) == data


@given(st.binary(max_size=2048), st.sampled_from(list(Compression)), st.booleans())
def test_property_arbitrary_stored_bytes(junk: bytes, compression: Compression, key: bool
                                         ) -> None:
    # Junk that happens to carry the right id (an attacker can name any bytes)
    # still raises only our error type.
    if not junk:
        return
    ref = BlockRef(block_id(junk), 0, 1, 100, len(junk), compression,
                   bytes(range(32)) if key else None)
    try:
        decode_block(ref, junk)
    except IntegrityError:
        pass


# --- zstd (format 1.1) ------------------------------------------------------


def _zstd_ref(body: bytes, size: int) -> BlockRef:
    return BlockRef(block_id(body), 0, 1, size, len(body), Compression.ZSTD)


def test_zstd_is_the_default_and_compresses() -> None:
    from zosnode.flist.pack import BuildOptions

    assert BuildOptions().compression is Compression.ZSTD
    b = encode_block(DATA, Compression.ZSTD, False)
    assert b.compression is Compression.ZSTD and len(b.stored) < len(DATA) // 10
    assert zstd.get_frame_info(b.stored).decompressed_size == len(DATA)


def test_zstd_bomb_bounded() -> None:
    # 8 MiB of zeros in a 300-byte frame, under a reference promising 1 KiB:
    # refused after producing at most 1 KiB + 1, not 8 MiB.
    bomb = zstd.compress(bytes(8 * 1024 * 1024))
    with pytest.raises(IntegrityError):
        decode_block(_zstd_ref(bomb, 1024), bomb)


def test_zstd_frame_header_size_is_not_trusted() -> None:
    # A frame that says nothing of its size, and one that decodes short.
    c = zstd.ZstdCompressor()
    unsized = c.compress(DATA) + c.flush()
    assert zstd.get_frame_info(unsized).decompressed_size is None
    assert decode_block(_zstd_ref(unsized, len(DATA)), unsized) == DATA
    with pytest.raises(IntegrityError, match="decodes to"):
        decode_block(_zstd_ref(unsized, len(DATA) + 1), unsized)


@pytest.mark.parametrize("damage", ["truncated", "trailing", "two frames", "skippable only"])
def test_zstd_stream_must_be_one_whole_frame(damage: str) -> None:
    frame = zstd.compress(DATA)
    body = {
        "truncated": frame[:-5],
        "trailing": frame + b"\0",
        "two frames": frame + zstd.compress(b"more"),
        # A skippable frame (magic 0x184D2A50) holding nothing a reader may use.
        "skippable only": (0x184D2A50).to_bytes(4, "little") + (4).to_bytes(4, "little") + b"xxxx",
    }[damage]
    with pytest.raises(IntegrityError):
        decode_block(_zstd_ref(body, len(DATA)), body)


def test_zstd_window_past_the_largest_block_refused() -> None:
    # The window is the decoder's other allocation: a frame asking 128 MiB is
    # refused even though its content is small.
    c = zstd.ZstdCompressor(options={zstd.CompressionParameter.window_log: 27})
    body = c.compress(bytes(60000)) + c.flush()
    with pytest.raises(IntegrityError, match="decompress"):
        decode_block(_zstd_ref(body, 60000), body)
    # The builder's own frames for the largest block fit the limit.
    big = os.urandom(4096) * 2048
    b = encode_block(big, Compression.ZSTD, False, level=19)
    assert decode_block(b.ref(0, 1), b.stored) == big


@pytest.mark.parametrize("compression", [Compression.ZLIB, Compression.LZMA, Compression.BZ2])
def test_format_1_0_codecs_still_decode(compression: Compression) -> None:
    b = encode_block(DATA, compression, True)
    assert b.compression is compression
    assert decode_block(b.ref(0, 1), b.stored) == DATA
