"""Fuzz target `canonical`: the canonical-CBOR gate every signed or hashed document passes.

Property: any bytes are refused with `CanonicalError` or decode to a value
that `dumps` encodes back to exactly those bytes, in time linear in their
length (value-sharing tags once let 135 bytes expand to 2**22 nodes); and
the codec is held to cbor2 (a test dependency only): it accepts exactly the
documents cbor2 decodes to allowed values that cbor2's `canonical=True`
writes back byte for byte, with the same values, and encodes as cbor2 does.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.budget import Target, fuzz, replay
from tests.fuzz.mutate import cbor_documents, havoc
from zosnode import canonical
from zosnode.flist import writer
from zosnode.flist.builder import build_from
from zosnode.flist.store import LocalStore

MAX = 1 << 20


def _allowed(value: Any, depth: int, seen: set[int]) -> bool:
    """Whether cbor2's decoding of a document is made of what our codec
    allows, no non-empty container deeper than `depth`; a container met twice
    (value sharing) is not, which also keeps the walk linear."""
    if value is None or type(value) in (bool, bytes, str):
        return True
    if type(value) is int:
        return -(2**64) <= value < 2**64
    if type(value) not in (list, dict) or id(value) in seen:
        return False
    seen.add(id(value))
    if value and depth == 0:
        return False
    if isinstance(value, dict):
        return all(type(k) in (int, str) and _allowed(k, 0, seen) and _allowed(v, depth - 1, seen)
                   for k, v in value.items())
    return all(_allowed(v, depth - 1, seen) for v in value)


def cbor2_reference(data: bytes) -> tuple[bool, Any]:
    """(accepted, value) by cbor2's decoder and canonical encoder."""
    try:
        value = cbor2.loads(data)
        return (_allowed(value, canonical.DEPTH, set())
                and cbor2.dumps(value, canonical=True) == data), value
    except Exception:  # noqa: BLE001 - cbor2 raises many types on garbage
        return False, None


def check_canonical(data: bytes) -> None:
    accepted, reference = cbor2_reference(data)
    try:
        value = canonical.loads(data, max_size=MAX)
    except canonical.CanonicalError:
        assert not accepted, "cbor2 accepts what the codec refuses"
        return
    assert accepted, "the codec accepts what cbor2 refuses"
    assert value == reference and _same_types(value, reference)
    assert canonical.dumps(value) == data


def _same_types(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return all(_same_types(k, k2) and _same_types(a[k], b[k2])
                   for k, k2 in zip(a, b, strict=True))
    if isinstance(a, list):
        return all(_same_types(x, y) for x, y in zip(a, b, strict=True))
    return True


CANONICAL = Target("canonical", check_canonical)
SEEDS = [
    canonical.dumps(v)
    for v in (
        {"a": [1, -1, 2**64 - 1, -(2**64)], "b": {"": b"\x00" * 30, "c": None}, 7: True},
        [[[[]]], {}, "", False, "text \u00e9\u4e2d"],
    )
]

test_canonical_regressions = replay(CANONICAL)
test_canonical_havoc = fuzz(CANONICAL, havoc(SEEDS))
test_canonical_documents = fuzz(CANONICAL, cbor_documents())
test_canonical_raw = fuzz(CANONICAL, st.binary(max_size=256))


def _shared_dag(levels: int) -> bytes:
    node: list[Any] = []
    for _ in range(levels):
        node = [node, node]
    return bytes(cbor2.dumps(node, value_sharing=True))


@contextmanager
def _alarm(seconds: int) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still decoding after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_value_sharing_cannot_expand_a_small_input() -> None:
    data = _shared_dag(50)  # 2**50 nodes once expanded
    assert len(data) < 400
    with _alarm(20), pytest.raises(canonical.CanonicalError, match="tag 28"):
        canonical.loads(data, max_size=MAX)


@pytest.mark.parametrize(
    "data, needle",
    [
        (b"\xc2\x41\x01", "tag 2"),  # a bignum: an int from a byte string
        (b"\xd9\xd9\xf7\x01", "tag 55799"),  # the self-describe tag
        (b"\xf9\x3c\x00", "float"),
        (b"\xf7", "simple value"),  # undefined
        (b"\xa1\xf5\x01", "map key"),  # {true: 1}
        (b"\xa1\x41a\x01", "map key"),  # {b"a": 1}
        (b"\x9f\x01\xff", "indefinite"),
        (b"\x01\x00", "trailing"),
        (b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff", "truncated"),
        (b"\x18\x17", "shortest"),  # 23 in a one-byte head
        (b"\x39\x00\xff", "shortest"),  # -256 in a two-byte head
        (b"\x7a\x00\x00\x00\x01a", "shortest"),
        (b"\xa2\x61b\x01\x61a\x02", "unsorted"),
        (b"\xa2\x62aa\x01\x61b\x02", "unsorted"),  # length first: "b" before "aa"
        (b"\xa2\x18\x18\x01\x20\x02", "unsorted"),  # -1 (one byte) before 24 (two)
        (b"\xa2\x01\x01\x01\x02", "duplicate"),
        (b"\x62\xc3\x28", "UTF-8"),
        (b"\x63\xed\xa0\x80", "UTF-8"),  # a surrogate
        (b"\xff", "reserved"),
        (b"\xf8\x20", "simple value"),
        (b"\x81" * 65 + b"\x80", "deeper"),
    ],
)
def test_what_the_scan_refuses(data: bytes, needle: str) -> None:
    with pytest.raises(canonical.CanonicalError, match=needle):
        canonical.loads(data, max_size=MAX)


_KEYS = st.one_of(st.integers(-(2**64), 2**64 - 1), st.text(max_size=30))
_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64 - 1),
              st.binary(max_size=300), st.text(max_size=300)),
    lambda inner: st.lists(inner, max_size=30) | st.dictionaries(_KEYS, inner, max_size=30),
    max_leaves=200)


@given(_VALUES)
@settings(max_examples=300, deadline=None, database=None)
def test_dumps_writes_what_cbor2_canonical_writes(value: Any) -> None:
    assert canonical.dumps(value) == cbor2.dumps(value, canonical=True)


def test_a_real_flist_decodes_to_cbor2s_value(tmp_path: Path) -> None:
    """A whole flist document (thousands of maps), both ways."""
    tree = tmp_path / "tree"
    for i in range(300):
        (tree / f"d{i % 7}").mkdir(parents=True, exist_ok=True)
        (tree / f"d{i % 7}" / f"f{i}").write_bytes(bytes([i % 256]) * i)
    store = LocalStore(tmp_path / "store")
    store.init()
    data = writer.encode(build_from(str(tree), store)[0])
    check_canonical(data)
    assert data == cbor2.dumps(cbor2.loads(data), canonical=True)


def _nested(levels: int) -> list[Any]:
    value: list[Any] = [1]
    for _ in range(levels - 1):
        value = [value]
    return value


def test_dumps_refuses_what_loads_would() -> None:
    refused: tuple[Any, ...] = (2**64, -(2**64) - 1, {True: 1}, 1.5, ["\ud800"], {b"k": 1},
                                set(), _nested(65))
    for value in refused:
        with pytest.raises(canonical.CanonicalError):
            canonical.dumps(value)
    kept: tuple[Any, ...] = (2**64 - 1, -(2**64), {1: True, "a": None}, _nested(64))
    for value in kept:
        assert canonical.loads(canonical.dumps(value), max_size=MAX) == value
