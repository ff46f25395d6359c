"""The builder's side of the flist format: blocks and flists encoded.

A node only reads (`zosnode.flist.blocks.decode_block`,
`zosnode.flist.format.decode`); what a build, a release and
`flist record-prefetch` write is made here, to the same spec
(docs/flist-format.md), and every test decodes it back to the same bytes.
"""

from __future__ import annotations

import bz2
import dataclasses
import hashlib
import lzma
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import nacl.secret

from zosnode import canonical
from zosnode.flist.blocks import (
    KEY_SIZE,
    MAX_BLOCK_SIZE,
    BlockRef,
    Compression,
    block_id,
    nonce,
    zstd,
)
from zosnode.flist.errors import FlistInputError, FormatError
from zosnode.flist.format import MAJOR, MAX_META, MAX_METADATA, Entry, Flist, Hole, Kind

# Convergent encryption: the key is a keyed hash of the compressed plaintext.
_KEY_PERSON = b"zosnode-cvg-key"


@dataclass(frozen=True)
class EncodedBlock:
    """A block ready for the store, and what a reference needs to read it back."""

    id: str
    stored: bytes
    size: int
    compression: Compression
    key: bytes | None

    def ref(self, offset: int, length: int) -> BlockRef:
        return BlockRef(
            self.id, offset, length, self.size, len(self.stored), self.compression, self.key
        )


# zstd's level, chosen on the Debian minbase tree (docs/flist-format.md,
# bench/flist.md): past it, each level costs more build time than it saves bytes.
ZSTD_LEVEL = 3


def _compress(data: bytes, compression: Compression, level: int | None = None) -> bytes:
    if compression is Compression.NONE:
        return data
    if compression is Compression.ZSTD:
        # One-shot: the frame records its content size and a window no larger
        # than the block, which the reader's window limit relies on.
        out: bytes = zstd.compress(data, level=ZSTD_LEVEL if level is None else level)
        return out
    if compression is Compression.ZLIB:
        return zlib.compress(data, 6 if level is None else level)
    if compression is Compression.LZMA:
        return lzma.compress(data, preset=6 if level is None else level)
    if compression is Compression.BZ2:
        return bz2.compress(data, 9 if level is None else level)
    raise FlistInputError(f"unknown compression {compression!r}")


def encode_block(
    decoded: bytes, compression: Compression, encrypt: bool, level: int | None = None
) -> EncodedBlock:
    """Compress, maybe encrypt, and hash `decoded`: the one hash a block gets at build."""
    if not 0 < len(decoded) <= MAX_BLOCK_SIZE:
        raise FlistInputError(f"block of {len(decoded)} bytes outside 1..{MAX_BLOCK_SIZE}")
    body = _compress(decoded, compression, level)
    if len(body) >= len(decoded) and compression is not Compression.NONE:
        # Incompressible: storing it raw is smaller and cheaper to read.
        body, compression = decoded, Compression.NONE
    key: bytes | None = None
    if encrypt:
        key = hashlib.blake2b(body, digest_size=KEY_SIZE, person=_KEY_PERSON).digest()
        body = nacl.secret.SecretBox(key).encrypt(body, nonce(key)).ciphertext
    return EncodedBlock(block_id(body), body, len(decoded), compression, key)


def encode(flist: Flist) -> bytes:
    """The flist's one canonical encoding (`format.decode` gives it back)."""
    blocks = flist.blocks()
    index = {bid: i for i, bid in enumerate(blocks)}
    wire_blocks = [
        [bytes.fromhex(r.id), r.stored_size, r.size, int(r.compression), r.key]
        for r in blocks.values()
    ]
    for bid in flist.prefetch:
        if bid not in index:
            raise FormatError(f"prefetch names block {bid} that no file uses")
    doc = {
        "version": [MAJOR, flist.minor],
        "blocks": wire_blocks,
        "entries": [_encode_entry(e, index) for e in flist.entries],
        "prefetch": [index[b] for b in flist.prefetch],
        "meta": dict(flist.metadata),
    }
    meta = canonical.dumps(doc["meta"])
    if len(meta) > MAX_META:
        raise FormatError(f"free-form metadata of {len(meta)} bytes is over {MAX_META}")
    data = canonical.dumps(doc)
    if len(data) > MAX_METADATA:
        raise FormatError(f"flist of {len(data)} bytes is over {MAX_METADATA}")
    return data


def _encode_entry(e: Entry, index: Mapping[str, int]) -> list[Any]:
    data: Any = None
    if e.kind is Kind.REG:
        data = [
            [None, 0, x.length] if isinstance(x, Hole) else [index[x.id], x.offset, x.length]
            for x in e.extents
        ]
    elif e.kind is Kind.SYMLINK:
        data = e.target
    elif e.kind is Kind.HARDLINK:
        data = e.link
    elif e.kind in (Kind.CHR, Kind.BLK):
        data = e.rdev
    return [
        e.parent, e.name, int(e.kind), e.mode, e.uid, e.gid, e.mtime_ns,
        [[n, v] for n, v in e.xattrs], data,
    ]


def with_hint(flist: Flist, order: list[str]) -> bytes:
    """The flist re-encoded with `order` (blocks first read, in order) as its hint."""
    known = flist.blocks()
    hint = tuple(dict.fromkeys(b for b in order if b in known))
    return encode(dataclasses.replace(flist, prefetch=hint))
