"""Blocks: stored = encrypt(compress(decoded)), both optional. The id hashes the *stored* bytes
(BLAKE2b-256): checked without a key, before a byte of it is decrypted or decompressed."""

import bz2
import enum
import hashlib
import lzma
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import nacl.exceptions
import nacl.secret

# The writer imports zstd from here: it compresses with the module the reader trusts.
if sys.version_info >= (3, 14):  # the standard library's; before, the pinned backport
    from compression import zstd as zstd
else:
    from backports import zstd as zstd

from zosnode import layout
from zosnode.flist.errors import FormatError, IntegrityError

KEY_SIZE = nacl.secret.SecretBox.KEY_SIZE
MAX_BLOCK_SIZE = 8 * 1024 * 1024  # no decoded block is larger: bounds memory and decompression
NONCE_PERSON = b"zosnode-cvg-nce"
Buffer = bytes | memoryview  # a view: a trusted cache's mapped file, decoded as it is


# The compressors by wire code 0..4 in this order (zstd since format 1.1; append only).
Compression = enum.IntEnum("Compression", "NONE ZLIB LZMA BZ2 ZSTD", start=0)


block_id = layout.object_id


def check_int(what: str, value: object, lo: int, hi: int) -> None:
    # Not isinstance: a CBOR true is an int to Python, and would give a tree two encodings.
    if type(value) is not int or not lo <= value < hi:
        raise FormatError(f"{what} {value!r} is not an integer in [{lo}, {hi})")


@dataclass(frozen=True)
class BlockRef:
    """`length` bytes at `offset` in a decoded block; the other fields: the block itself."""

    id: str
    offset: int
    length: int
    size: int
    stored_size: int
    compression: Compression
    key: bytes | None = None

    def __post_init__(self) -> None:
        if not layout.is_hex_id(self.id):
            raise FormatError(f"{self.id!r} is not a 64-digit lowercase hex block id")
        check_int("block size", self.size, 1, MAX_BLOCK_SIZE + 1)
        check_int("slice offset", self.offset, 0, self.size)
        check_int("slice length", self.length, 1, self.size - self.offset + 1)
        check_int("stored size", self.stored_size, 1, MAX_BLOCK_SIZE + 1024 * 1024 + 1)
        if not isinstance(self.compression, Compression):
            raise FormatError(f"unknown compression {self.compression!r}")
        if self.key is not None and (type(self.key) is not bytes or len(self.key) != KEY_SIZE):
            raise FormatError(f"a block key is {KEY_SIZE} bytes")

    def slice(self, offset: int, length: int) -> "BlockRef":
        """This block's `length` bytes at `offset`: only they are checked (the rest was, here)."""
        check_int("slice offset", offset, 0, self.size)
        check_int("slice length", length, 1, self.size - offset + 1)
        ref = object.__new__(BlockRef)
        vars(ref).update(vars(self), offset=offset, length=length)  # frozen: set once, here
        return ref


def _decompress(data: Buffer, compression: Compression, size: int) -> Buffer:
    # Output capped one past the promised size (shows a liar); one whole stream, nothing after.
    if compression is Compression.NONE:
        out = data
    else:
        d = _DECOMPRESSORS[compression]()
        try:
            out = d.decompress(data, size + 1)
        except (zlib.error, lzma.LZMAError, zstd.ZstdError, OSError, EOFError) as exc:
            raise IntegrityError(f"block does not decompress: {exc}") from None
        if not d.eof or d.unused_data or getattr(d, "unconsumed_tail", b""):
            raise IntegrityError(f"{compression.name.lower()} block is not one complete "
                                 "stream of the stated size")
    if len(out) != size:
        raise IntegrityError(f"block decodes to {len(out)} bytes, its reference says {size}")
    return out


# zstd: a frame's content size is not trusted; a window over the largest block is refused.
_DECOMPRESSORS: dict[Compression, Callable[[], Any]] = {
    Compression.ZLIB: zlib.decompressobj,
    Compression.LZMA: lzma.LZMADecompressor,
    Compression.BZ2: bz2.BZ2Decompressor,
    Compression.ZSTD: partial(zstd.ZstdDecompressor, options={
        zstd.DecompressionParameter.window_log_max: MAX_BLOCK_SIZE.bit_length() - 1}),
}


def nonce(key: bytes) -> bytes:
    # A convergent key encrypts only the plaintext it came from: the nonce may come from it.
    size = nacl.secret.SecretBox.NONCE_SIZE
    return hashlib.blake2b(key, digest_size=size, person=NONCE_PERSON).digest()




def decode_block(ref: BlockRef, stored: Buffer) -> Buffer:
    """The whole decoded block `ref` names, once `stored` is checked (first) to be it."""
    if len(stored) != ref.stored_size:
        raise IntegrityError(f"block {ref.id} is {len(stored)} bytes, "
                             f"its reference says {ref.stored_size}")
    if block_id(stored) != ref.id:
        raise IntegrityError(f"block {ref.id} does not match its hash")
    return decode_verified(ref, stored)


def decode_verified(ref: BlockRef, stored: Buffer) -> Buffer:
    """`decode_block` of bytes checked in this boot (`cache.store`); raw: not copied."""
    body = stored
    if ref.key is not None:
        if len(stored) < nacl.secret.SecretBox.MACBYTES:
            raise IntegrityError(f"block {ref.id} is too short to be encrypted")
        try:
            body = nacl.secret.SecretBox(ref.key).decrypt(bytes(stored), nonce(ref.key))
        except nacl.exceptions.CryptoError:
            raise IntegrityError(f"block {ref.id} does not decrypt with its key") from None
    return _decompress(body, ref.compression, ref.size)
