"""A service's output as lines: whole, byte by byte, over-long lines, and the bound."""

from __future__ import annotations

import pytest

from zosnode.agent.services.ring import OutputLines

TEXT = b"first line\nsecond\r\nthird \xff bytes\nno newline"


def test_whole_and_byte_by_byte_agree() -> None:
    whole = OutputLines()
    got_whole = whole.feed(TEXT) + whole.close()
    split = OutputLines()
    got_split: list[str] = []
    for i in range(len(TEXT)):
        got_split += split.feed(TEXT[i : i + 1])
    got_split += split.close()
    assert got_whole == got_split == ["first line", "second", "third \ufffd bytes", "no newline"]


def test_trailing_partial_waits_for_its_newline() -> None:
    lines = OutputLines()
    assert lines.feed(b"abc") == []
    assert lines.feed(b"def\nxy") == ["abcdef"]
    assert lines.close() == ["xy"] and lines.close() == []


def test_a_line_without_newline_is_cut_not_grown() -> None:
    lines = OutputLines(max_line=10)
    out = lines.feed(b"x" * 35)
    assert out == ["x" * 10] * 3
    assert len(lines._partial) == 5  # what is held never exceeds one line
    assert lines.close() == ["x" * 5]
    for _ in range(1000):
        lines.feed(b"y" * 7)
        assert len(lines._partial) <= 10


def test_bad_bound() -> None:
    with pytest.raises(ValueError):
        OutputLines(max_line=0)
