"""The bounded output ring: whole, byte by byte, over-long lines, and the bound."""

from __future__ import annotations

import pytest

from zosnode.agent.services.ring import OutputRing

TEXT = b"first line\nsecond\r\nthird \xff bytes\nno newline"


def test_whole_and_byte_by_byte_agree() -> None:
    whole = OutputRing()
    got_whole = whole.feed(TEXT) + whole.close()
    split = OutputRing()
    got_split: list[str] = []
    for i in range(len(TEXT)):
        got_split += split.feed(TEXT[i : i + 1])
    got_split += split.close()
    assert got_whole == got_split == ["first line", "second", "third \ufffd bytes", "no newline"]
    assert whole.lines() == split.lines()


def test_trailing_partial_waits_for_its_newline() -> None:
    ring = OutputRing()
    assert ring.feed(b"abc") == []
    assert ring.feed(b"def\nxy") == ["abcdef"]
    assert ring.lines() == ("abcdef",)


def test_keeps_only_the_newest_lines_within_the_bound() -> None:
    ring = OutputRing(max_bytes=100, max_line=50)
    for i in range(1000):
        ring.feed(f"line {i:04d}\n".encode())
    assert ring.size <= 100
    assert ring.lines()[-1] == "line 0999"
    assert len(ring.lines()) == 100 // len("line 0000\n")
    assert ring.dropped == 1000 - len(ring.lines())


def test_a_line_without_newline_is_cut_not_grown() -> None:
    ring = OutputRing(max_bytes=1000, max_line=10)
    out = ring.feed(b"x" * 35)
    assert out == ["x" * 10] * 3
    assert ring.close() == ["x" * 5]


def test_bad_bounds() -> None:
    with pytest.raises(ValueError):
        OutputRing(max_bytes=10, max_line=20)
