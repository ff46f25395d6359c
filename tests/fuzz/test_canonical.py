"""Fuzz target `canonical`: the canonical-CBOR gate every signed or hashed document passes.

Property: any bytes are refused with `CanonicalError` or decode to a value
that `dumps` encodes back to exactly those bytes, in time linear in their
length (value-sharing tags once let 135 bytes expand to 2**22 nodes).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import cbor2
import pytest
from hypothesis import strategies as st

from tests.fuzz.budget import Target, fuzz, replay
from tests.fuzz.mutate import cbor_documents, havoc
from zosnode import canonical

MAX = 1 << 20


def check_canonical(data: bytes) -> None:
    try:
        value = canonical.loads(data, max_size=MAX)
    except canonical.CanonicalError:
        return
    assert canonical.dumps(value) == data


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
    ],
)
def test_what_the_scan_refuses(data: bytes, needle: str) -> None:
    with pytest.raises(canonical.CanonicalError, match=needle):
        canonical.loads(data, max_size=MAX)


def test_dumps_refuses_what_loads_would() -> None:
    refused: tuple[Any, ...] = (2**64, -(2**64) - 1, {True: 1}, 1.5)
    for value in refused:
        with pytest.raises(canonical.CanonicalError):
            canonical.dumps(value)
    kept: tuple[Any, ...] = (2**64 - 1, -(2**64), {1: True, "a": None})
    for value in kept:
        assert canonical.loads(canonical.dumps(value), max_size=MAX) == value
