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
    read_ref,
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
    assert read_ref(ref, b.stored) == DATA[18:118]
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
