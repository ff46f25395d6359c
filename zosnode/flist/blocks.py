"""Blocks: how file bytes become stored bytes and back.

A block's decoded bytes are either one slice of a large file or several
small files packed end to end. Stored bytes = encrypt(compress(decoded)),
both steps optional. The block id is BLAKE2b-256 of the *stored* bytes, so a
store or mirror can be checked without any key, and a node checks a block
before it decrypts or decompresses a single byte of it.

Convergent encryption: the key is a keyed hash of the compressed plaintext,
so equal blocks still deduplicate, and the key is kept only in the flist.
Because a key only ever encrypts the one plaintext it was derived from, the
nonce may be derived from the key as well; that keeps builds reproducible.
(Encoding is the builder's: `zosnode.flist.writer`.)
"""

from __future__ import annotations

import bz2
import enum
import hashlib
import lzma
import sys
import zlib
from dataclasses import dataclass

import nacl.exceptions
import nacl.secret

if sys.version_info >= (3, 14):  # the standard library's; before, the pinned backport
    from compression import zstd
else:
    from backports import zstd

from zosnode import layout
from zosnode.flist.errors import FormatError, IntegrityError

__all__ = ["zstd"]  # re-exported: the writer compresses with the module the reader trusts

KEY_SIZE = nacl.secret.SecretBox.KEY_SIZE
# A decoded block never exceeds this: it bounds memory and decompression.
MAX_BLOCK_SIZE = 8 * 1024 * 1024
_OVERHEAD = nacl.secret.SecretBox.MACBYTES
NONCE_PERSON = b"zosnode-cvg-nce"
_ZSTD_LIMITS: dict[int, int] = {
    zstd.DecompressionParameter.window_log_max: MAX_BLOCK_SIZE.bit_length() - 1
}


class Compression(enum.IntEnum):
    """Wire codes of the compressors (zstd since format 1.1; the rest are 1.0's)."""

    NONE = 0
    ZLIB = 1
    LZMA = 2
    BZ2 = 3
    ZSTD = 4


def block_id(stored: bytes | memoryview) -> str:
    return layout.object_id(stored)


def check_id(value: str) -> str:
    if not layout.is_hex_id(value):
        raise FormatError(f"{value!r} is not a 64-digit lowercase hex block id")
    return value


@dataclass(frozen=True)
class BlockRef:
    """Where some file bytes live: `length` bytes at `offset` in a decoded block.

    `size` (the decoded size of the whole block), `stored_size`, the
    compression and the key describe the block itself and are the same in every
    reference to it.
    """

    id: str
    offset: int
    length: int
    size: int
    stored_size: int
    compression: Compression
    key: bytes | None = None

    def __post_init__(self) -> None:
        check_id(self.id)
        if not 0 < self.size <= MAX_BLOCK_SIZE:
            raise FormatError(f"block size {self.size} outside 1..{MAX_BLOCK_SIZE}")
        if self.offset < 0 or self.length <= 0 or self.offset + self.length > self.size:
            raise FormatError(
                f"slice {self.offset}+{self.length} does not fit a {self.size}-byte block"
            )
        if not 0 < self.stored_size <= MAX_BLOCK_SIZE + 1024 * 1024:
            raise FormatError(f"stored size {self.stored_size} is out of range")
        if not isinstance(self.compression, Compression):
            raise FormatError(f"unknown compression {self.compression!r}")
        if self.key is not None and len(self.key) != KEY_SIZE:
            raise FormatError(f"a block key is {KEY_SIZE} bytes, not {len(self.key)}")


def _decompress(data: Buffer, compression: Compression, size: int) -> Buffer:
    # Every decompressor is told the most it may produce, so a hostile block
    # cannot balloon past the size its reference promised.
    try:
        if compression is Compression.NONE:
            out = data
        elif compression is Compression.ZSTD:
            out = _unzstd(data, size)
        elif compression is Compression.ZLIB:
            z = zlib.decompressobj()
            out = z.decompress(data, size + 1)
            if not z.eof or z.unused_data or z.unconsumed_tail:
                raise IntegrityError("zlib block is not one complete stream of the stated size")
        elif compression is Compression.LZMA:
            lz = lzma.LZMADecompressor()
            out = lz.decompress(data, size + 1)
            if not lz.eof or lz.unused_data:
                raise IntegrityError("lzma block is not one complete stream of the stated size")
        else:
            bz = bz2.BZ2Decompressor()
            out = bz.decompress(data, size + 1)
            if not bz.eof or bz.unused_data:
                raise IntegrityError("bz2 block is not one complete stream of the stated size")
    except (zlib.error, lzma.LZMAError, zstd.ZstdError, OSError, EOFError) as exc:
        raise IntegrityError(f"block does not decompress: {exc}") from None
    if len(out) != size:
        raise IntegrityError(f"block decodes to {len(out)} bytes, its reference says {size}")
    return out


def _unzstd(data: Buffer, size: int) -> bytes:
    # One frame, at most size + 1 bytes out (one past the promise shows a
    # liar), no trailing bytes. The frame header's own content size is not
    # trusted: max_length bounds the output, and the window (the decoder's
    # other allocation) may not exceed the largest block (a frame asking for
    # more is refused, not obeyed).
    z = zstd.ZstdDecompressor(options=_ZSTD_LIMITS)
    out: bytes = z.decompress(data, max_length=size + 1)
    if not z.eof or z.unused_data:
        raise IntegrityError("zstd block is not one complete frame of the stated size")
    return out


def nonce(key: bytes) -> bytes:
    return hashlib.blake2b(
        key, digest_size=nacl.secret.SecretBox.NONCE_SIZE, person=NONCE_PERSON
    ).digest()


# Bytes, or a view of them (a trusted cache's mapped file): decoded as they are.
Buffer = bytes | memoryview


def decode_block(ref: BlockRef, stored: Buffer) -> Buffer:
    """Return the whole decoded block named by `ref`, after checking `stored` is it.

    The hash is checked first; nothing is decrypted or decompressed before.
    """
    if len(stored) != ref.stored_size:
        raise IntegrityError(
            f"block {ref.id} is {len(stored)} bytes, its reference says {ref.stored_size}"
        )
    if block_id(stored) != ref.id:
        raise IntegrityError(f"block {ref.id} does not match its hash")
    return decode_verified(ref, stored)


def decode_verified(ref: BlockRef, stored: Buffer) -> Buffer:
    """`decode_block` of bytes already checked against `ref.id` in this boot
    (a trusted cache's: `zosnode.cache.store`); a raw block is not copied."""
    body = stored
    if ref.key is not None:
        if len(stored) < _OVERHEAD:
            raise IntegrityError(f"block {ref.id} is too short to be encrypted")
        try:
            body = nacl.secret.SecretBox(ref.key).decrypt(bytes(stored), nonce(ref.key))
        except nacl.exceptions.CryptoError:
            raise IntegrityError(f"block {ref.id} does not decrypt with its key") from None
    return _decompress(body, ref.compression, ref.size)
