"""The local block store: the shared DATA layout on disk (`zosnode.layout`).

It holds blocks (stored bytes), flists (encoded) and tags (one line: the
flist id a human name points at), at the paths a hub serves them from.

Every write goes to a temporary name in the same directory, is fsynced and
then renamed, so a crash leaves either the whole object or nothing. Content
addressing makes rewrites harmless: an id can only ever hold one content.
"""

from __future__ import annotations

import os
from pathlib import Path

from zosnode import layout
from zosnode.atomicfile import write_atomic
from zosnode.flist.blocks import BlockRef, block_id
from zosnode.flist.errors import FlistDataError, FlistInputError, FormatError, IntegrityError
from zosnode.flist.format import MAX_METADATA, flist_id
from zosnode.hub import paths


def _check_id(value: str) -> str:
    # A data error, not layout.check_id's usage error: a tag file's content is one.
    if not layout.is_hex_id(value):
        raise FormatError(f"{value!r} is not a 64-digit lowercase hex id")
    return value


class MissingBlockError(FlistDataError):
    """A block the flist references is not in the store."""

    def __init__(self, block_id: str) -> None:
        super().__init__(f"block {block_id} is missing from the store")
        self.block_id = block_id


class LocalStore:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._dirs_made: set[str] = set()

    def init(self) -> None:
        for sub in (layout.BLOCKS, layout.FLISTS, paths.TAGS):
            (self.path / sub).mkdir(parents=True, exist_ok=True)

    # blocks ---------------------------------------------------------------

    def block_path(self, bid: str) -> Path:
        _check_id(bid)
        return self.path / layout.block_path(bid)

    def put_block(self, stored: bytes, known_id: str | None = None) -> tuple[str, bool]:
        """Store a block; return its id and whether it was new.

        `known_id` saves hashing twice when the caller has just computed it
        (the builder); it must be BLAKE2b-256 of `stored`.
        """
        bid = known_id or block_id(stored)
        path = self.block_path(bid)
        if path.exists():
            return bid, False
        shard = bid[:2]
        if shard not in self._dirs_made:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs_made.add(shard)
        write_atomic(path, stored)
        return bid, True

    def get_block(self, bid: str, max_size: int | None = None) -> bytes:
        """The stored bytes of a block, unverified (decode_block verifies)."""
        try:
            with open(self.block_path(bid), "rb") as f:
                return f.read() if max_size is None else f.read(max_size + 1)
        except FileNotFoundError:
            raise MissingBlockError(bid) from None

    def get(self, ref: BlockRef) -> bytes:
        """Block source protocol: the stored bytes for `ref` (the caller verifies)."""
        return self.get_block(ref.id, ref.stored_size)

    # flists ---------------------------------------------------------------

    def put_flist(self, data: bytes) -> str:
        fid = flist_id(data)
        path = self.path / layout.flist_path(fid)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, data)
        return fid

    def get_flist(self, fid: str) -> bytes:
        _check_id(fid)
        try:
            with open(self.path / layout.flist_path(fid), "rb") as f:
                data = f.read(MAX_METADATA + 1)
        except FileNotFoundError:
            raise FlistInputError(f"flist {fid} is not in {self.path}") from None
        if flist_id(data) != fid:
            raise IntegrityError(f"flist {fid} in {self.path} does not match its hash")
        return data

    # tags -----------------------------------------------------------------

    def set_tag(self, name: str, fid: str) -> None:
        if not paths.is_tag(name):
            raise FlistInputError(f"tag {name!r} is not [A-Za-z0-9._-], up to 128 characters")
        _check_id(fid)
        (self.path / paths.TAGS).mkdir(parents=True, exist_ok=True)
        write_atomic(self.path / paths.tag_path(name), fid.encode() + b"\n")

    def get_tag(self, name: str) -> str | None:
        if not paths.is_tag(name):
            return None
        try:
            text = (self.path / paths.tag_path(name)).read_text().strip()
        except FileNotFoundError:
            return None
        _check_id(text)
        return text

    def resolve(self, name: str) -> bytes:
        """Encoded flist bytes for an id or a tag held in this store."""
        fid = name if layout.is_hex_id(name) else self.get_tag(name)
        if fid is None:
            raise FlistInputError(f"{name!r} is neither a flist id nor a tag in {self.path}")
        return self.get_flist(fid)
