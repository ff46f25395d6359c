"""Fuzz target `flist`: the flist decoder and the view built on what it accepts.

Property: any bytes are either refused with `FormatError` or accepted; an
accepted flist re-encodes to the very same bytes (one tree, one id), carries
exact types (no CBOR boolean standing in for a number: Python's `True == 1`
would hide a second encoding from the round trip, as `BlockRef(offset=False)`
re-encodes as `false`), and the view over it walks, resolves and plans reads
of every file raising nothing but the flist layer's own errors.
"""

from __future__ import annotations

import os

from hypothesis import strategies as st

from tests.fuzz.budget import Target, fuzz, replay
from tests.fuzz.mutate import cbor_documents, cbor_havoc, cbor_mutated, havoc, mutated
from zosnode.flist.blocks import BlockRef, Compression
from zosnode.flist.browse import follow, lookup, walk
from zosnode.flist.errors import FlistError, FormatError
from zosnode.flist.format import Entry, Flist, Hole, Kind, decode
from zosnode.flist.view import FlistView
from zosnode.flist.writer import encode, encode_block


def _exact_ints(flist: Flist) -> None:
    for e in flist.entries:
        for name in ("index", "mode", "uid", "gid", "mtime_ns", "rdev", "size"):
            assert type(getattr(e, name)) is int, (e.index, name)
        for name in ("parent", "link"):
            assert getattr(e, name) is None or type(getattr(e, name)) is int, (e.index, name)
        for x in e.extents:
            fields = ("length",) if isinstance(x, Hole) else (
                "offset", "length", "size", "stored_size")
            for name in fields:
                assert type(getattr(x, name)) is int, (e.index, name)
    assert type(flist.minor) is int


def _walk(flist: Flist) -> None:
    view = FlistView(flist)
    for path, e in walk(view):
        assert lookup(view, path) is e
        if e.kind is Kind.SYMLINK:
            try:
                follow(view, path)
            except FlistError:
                pass
        target = view.resolve(e)
        if target.kind is Kind.REG:
            pieces = view.plan_read(e, 0, target.size + 1)
            assert sum(p.length for p in pieces) == target.size


def check_flist(data: bytes) -> None:
    try:
        flist = decode(data)
    except FormatError:
        return
    assert encode(flist) == data, "accepted bytes re-encode differently"
    _exact_ints(flist)
    _walk(flist)


FLIST = Target("flist", check_flist)


def _seeds() -> list[bytes]:
    a = encode_block(b"abcdefghij" * 10, Compression.NONE, False)
    b = encode_block(b"0123456789" * 40, Compression.ZLIB, True)
    rich = Flist(
        (
            Entry(0, None, b"", Kind.DIR, 0o755),
            Entry(1, 0, b"f", Kind.REG, 0o644, 1, 2, -3, ((b"user.x", b"y"),),
                  extents=(a.ref(0, 10), Hole(5), b.ref(20, 3), a.ref(90, 10))),
            Entry(2, 0, b"l", Kind.SYMLINK, 0o777, target=b"../d/p"),
            Entry(3, 0, b"h", Kind.HARDLINK, link=1),
            Entry(4, 0, b"d", Kind.DIR, 0o700),
            Entry(5, 4, b"c", Kind.CHR, 0o600, rdev=os.makedev(1, 3)),
            Entry(6, 4, b"p", Kind.FIFO, 0o600),
            Entry(7, 4, b"b", Kind.BLK, 0o600, rdev=(1 << 64) - 1),
            Entry(8, 4, b"empty", Kind.REG, 0o600),
            Entry(9, 0, b"abs", Kind.SYMLINK, target=b"/f"),
        ),
        prefetch=(b.id, a.id),
        metadata={"oci": {"cmd": ["/bin/sh"], "env": ["A=1"]}, "n": 1},
    )
    tiny = Flist((Entry(0, None, b"", Kind.DIR),))
    sparse = Flist((
        Entry(0, None, b"", Kind.DIR),
        Entry(1, 0, b"s", Kind.REG, extents=(Hole(1 << 40),
                                             BlockRef(a.id, 0, 1, a.size, len(a.stored),
                                                      a.compression))),
    ), minor=3)
    return [encode(f) for f in (rich, tiny, sparse)]


SEEDS = _seeds()

test_flist_regressions = replay(FLIST)
test_flist_mutated_bytes = fuzz(FLIST, mutated(SEEDS))
test_flist_havoc = fuzz(FLIST, havoc(SEEDS))
test_flist_mutated_cbor = fuzz(FLIST, cbor_mutated(SEEDS))
test_flist_cbor_havoc = fuzz(FLIST, cbor_havoc(SEEDS))
test_flist_cbor_documents = fuzz(FLIST, cbor_documents())
test_flist_raw_bytes = fuzz(FLIST, st.binary(max_size=512))


def test_seeds_are_accepted() -> None:
    # A seed the decoder refuses would make the mutations test only refusals.
    for seed in SEEDS:
        check_flist(seed)
        decode(seed)
