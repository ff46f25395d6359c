"""The flist parser: round trips, limits, and hostile bytes refused with our error."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zosnode import canonical
from zosnode.flist.blocks import Compression
from zosnode.flist.builder import build_from
from zosnode.flist.errors import FlistError, FormatError, UnsupportedVersionError
from zosnode.flist.format import (
    MAX_METADATA,
    Entry,
    Flist,
    Hole,
    Kind,
    decode,
    flist_id,
)
from zosnode.flist.store import LocalStore
from zosnode.flist.writer import encode, encode_block


def _sample() -> Flist:
    blk = encode_block(b"abcdefghij" * 10, Compression.NONE, False)
    return Flist(
        (
            Entry(0, None, b"", Kind.DIR, 0o755),
            Entry(1, 0, b"f", Kind.REG, 0o644, 1, 2, 3, ((b"user.x", b"y"),),
                  extents=(blk.ref(0, 10), Hole(5), blk.ref(20, 3))),
            Entry(2, 0, b"l", Kind.SYMLINK, 0o777, target=b"f"),
            Entry(3, 0, b"h", Kind.HARDLINK, link=1),
            Entry(4, 0, b"d", Kind.DIR, 0o700),
            Entry(5, 4, b"c", Kind.CHR, 0o600, rdev=os.makedev(1, 3)),
            Entry(6, 4, b"p", Kind.FIFO, 0o600),
        ),
        prefetch=(blk.id,),
        metadata={"oci": {"cmd": ["/bin/sh"]}},
    )


def _doc(flist: Flist) -> dict[str, Any]:
    return cbor2.loads(encode(flist))  # type: ignore[no-any-return]


def test_round_trip() -> None:
    f = _sample()
    data = encode(f)
    assert decode(data) == f
    assert encode(decode(data)) == data
    assert f.entries[1].size == 18
    assert len(flist_id(data)) == 64


def test_every_truncation_refused() -> None:
    data = encode(_sample())
    for n in range(len(data)):
        with pytest.raises(FormatError):
            decode(data[:n])


def test_trailing_data_refused() -> None:
    data = encode(_sample())
    for tail in (b"\x00", b"\xa0", data):
        with pytest.raises(FormatError):
            decode(data + tail)


def test_every_single_byte_flip_is_refused_or_parses_cleanly() -> None:
    data = encode(_sample())
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0xFF
        try:
            decode(bytes(bad))
        except FormatError:
            pass


def test_garbage_refused() -> None:
    for junk in (b"", b"\xff", b"not cbor at all", os.urandom(1000), cbor2.dumps([1, 2])):
        with pytest.raises(FormatError):
            decode(junk)


def test_oversize_metadata_refused() -> None:
    with pytest.raises(FormatError, match="cap"):
        decode(b"\xa0" * (MAX_METADATA + 1))


def _recode(doc: dict[str, Any]) -> bytes:
    return canonical.dumps(doc)


def test_unknown_major_version_refused() -> None:
    doc = _doc(_sample())
    doc["version"] = [2, 0]
    with pytest.raises(UnsupportedVersionError, match="2.0 is not supported"):
        decode(_recode(doc))
    # A newer minor of the same major is read.
    doc["version"] = [1, 7]
    assert decode(_recode(doc)).entries == _sample().entries


@pytest.mark.parametrize(
    "name", [b"..", b".", b"a/b", b"/etc", b"a\0b", b"", b"x" * 256], ids=repr
)
def test_traversal_and_bad_names_refused(name: bytes) -> None:
    doc = _doc(_sample())
    doc["entries"][1][1] = name
    with pytest.raises(FormatError):
        decode(_recode(doc))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["entries"][1].__setitem__(0, 1),  # own parent
        lambda d: d["entries"][1].__setitem__(0, 5),  # parent after it
        lambda d: d["entries"][5].__setitem__(0, 1),  # parent is a file
        lambda d: d["entries"][2].__setitem__(1, b"f"),  # duplicate name
        lambda d: d["entries"][3].__setitem__(8, 3),  # hardlink to itself
        lambda d: d["entries"][3].__setitem__(8, 0),  # hardlink to a directory
        lambda d: d["entries"][1][8].__setitem__(0, [7, 0, 1]),  # block index out of range
        lambda d: d["entries"][1][8].__setitem__(0, [0, 95, 10]),  # slice past the block
        lambda d: d["entries"][1].__setitem__(2, 99),  # unknown type
        lambda d: d["entries"][1].__setitem__(3, 0o200000),  # mode with type bits
        lambda d: d["entries"][1].__setitem__(4, -1),  # negative uid
        lambda d: d["entries"][2].__setitem__(8, b""),  # empty symlink target
        lambda d: d["entries"][0].__setitem__(2, 2),  # root not a directory
        lambda d: d["blocks"][0].__setitem__(3, 9),  # unknown compression
        lambda d: d["blocks"][0].__setitem__(2, 10**9),  # block over the size cap
        lambda d: d["blocks"].append(d["blocks"][0]),  # block listed twice
        lambda d: d.__setitem__("extra", 1),  # unknown field
        lambda d: d.pop("meta"),  # missing field
        lambda d: d["entries"][1][7].append([b"user.a", b"z"]),  # xattrs unsorted
        lambda d: d.__setitem__("prefetch", [3]),  # prefetch out of range
        lambda d: d.__setitem__("entries", []),  # no root
    ],
)
def test_structural_violations_refused(mutate: Any) -> None:
    doc = _doc(_sample())
    mutate(doc)
    with pytest.raises(FormatError):
        decode(_recode(doc))


def test_depth_limit() -> None:
    entries = [Entry(0, None, b"", Kind.DIR, 0o755)]
    for i in range(1, 130):
        entries.append(Entry(i, i - 1, b"d", Kind.DIR, 0o755))
    with pytest.raises(FormatError, match="deeper"):
        Flist(tuple(entries))


def test_non_canonical_encoding_refused() -> None:
    doc = _doc(_sample())
    data = cbor2.dumps(doc)  # not canonical: keys in insertion order
    if data != canonical.dumps(doc):
        with pytest.raises(FormatError):
            decode(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_property_parser_raises_only_our_error(data: bytes) -> None:
    try:
        decode(data)
    except FormatError:
        pass


_names = st.binary(min_size=1, max_size=20).filter(
    lambda n: b"/" not in n and b"\0" not in n and n not in (b".", b"..")
)


@st.composite
def flists(draw: st.DrawFn) -> Flist:
    entries = [Entry(0, None, b"", Kind.DIR, draw(st.integers(0, 0o7777)))]
    dirs = [0]
    names: set[tuple[int, bytes]] = set()
    for i in range(1, draw(st.integers(1, 12))):
        parent = draw(st.sampled_from(dirs))
        name = draw(_names)
        if (parent, name) in names:
            continue
        names.add((parent, name))
        i = len(entries)
        kind = draw(st.sampled_from([Kind.DIR, Kind.REG, Kind.SYMLINK, Kind.CHR, Kind.FIFO]))
        common: dict[str, Any] = dict(
            mode=draw(st.integers(0, 0o7777)), uid=draw(st.integers(0, 2**32 - 1)),
            gid=draw(st.integers(0, 2**32 - 1)), mtime_ns=draw(st.integers(-2**63, 2**63 - 1)),
        )
        if kind is Kind.REG:
            data = draw(st.binary(min_size=1, max_size=64))
            blk = encode_block(data, draw(st.sampled_from(list(Compression))), draw(st.booleans()))
            common["extents"] = (blk.ref(0, len(data)),)
        elif kind is Kind.SYMLINK:
            common["target"] = draw(
                st.binary(min_size=1, max_size=30).filter(lambda t: b"\0" not in t)
            )
        elif kind is Kind.CHR:
            common["rdev"] = draw(st.integers(0, 2**64 - 1))
        entries.append(Entry(i, parent, name, kind, **common))
        if kind is Kind.DIR:
            dirs.append(i)
    return Flist(tuple(entries), metadata={"k": draw(st.text(max_size=10))})


@settings(max_examples=150, deadline=None)
@given(flists())
def test_property_encode_decode(flist: Flist) -> None:
    data = encode(flist)
    assert decode(data) == flist
    assert encode(decode(data)) == data


def test_flist_from_builder_is_valid(rich_tree: Path, store: LocalStore) -> None:
    flist, _ = build_from(str(rich_tree), store)
    assert decode(encode(flist)) == flist


def test_errors_are_one_family() -> None:
    assert issubclass(UnsupportedVersionError, FormatError)
    assert issubclass(FormatError, FlistError)


_cbor = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64) + 1, 2**64 - 1) | st.binary(max_size=40)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=10)
    | st.dictionaries(st.text(max_size=8) | st.integers(0, 10), inner, max_size=5),
    max_leaves=12,
)
_scalar = st.none() | st.integers(-(2**64) + 1, 2**64 - 1) | st.binary(max_size=20)


@settings(max_examples=200, deadline=None)
@given(_cbor, st.lists(st.lists(_scalar, min_size=9, max_size=9), max_size=4), _cbor, _cbor)
def test_property_well_formed_cbor_of_wrong_shape_raises_only_our_error(
    blocks: Any, entries: Any, prefetch: Any, meta: Any
) -> None:
    doc = {"version": [1, 0], "blocks": blocks, "entries": entries,
           "prefetch": prefetch, "meta": meta}
    try:
        decode(canonical.dumps(doc))
    except FormatError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_property_mutated_valid_flist_raises_only_our_error(data: st.DataObject) -> None:
    doc = _doc(_sample())
    # Replace one field of one entry or block with an arbitrary value.
    where = data.draw(st.sampled_from(["entries", "blocks"]))
    row = data.draw(st.integers(0, len(doc[where]) - 1))
    col = data.draw(st.integers(0, len(doc[where][row]) - 1))
    doc[where][row][col] = data.draw(_cbor)
    try:
        decode(canonical.dumps(doc))
    except FormatError:
        pass
