"""Sequential-read detection: which bytes to fetch ahead, each range once."""

from __future__ import annotations

from zosnode.mount.readahead import ReadPattern

MIB = 1 << 20


def test_stream_from_start_reads_ahead_once() -> None:
    p = ReadPattern(window=4 * MIB)
    assert p.observe(0, 128 * 1024, 100 * MIB) == (128 * 1024, 128 * 1024 + 4 * MIB)
    # The next read extends the window by only what is new.
    nxt = p.observe(128 * 1024, 128 * 1024, 100 * MIB)
    assert nxt == (128 * 1024 + 4 * MIB, 256 * 1024 + 4 * MIB)


def test_random_reads_do_not_read_ahead() -> None:
    p = ReadPattern(window=4 * MIB)
    assert p.observe(50 * MIB, 4096, 100 * MIB) is None
    assert p.observe(10 * MIB, 4096, 100 * MIB) is None
    # Two in a row make a stream again.
    assert p.observe(10 * MIB + 4096, 4096, 100 * MIB) is not None


def test_never_past_end_of_file() -> None:
    p = ReadPattern(window=4 * MIB)
    assert p.observe(0, 1000, 3000) == (1000, 3000)
    assert p.observe(1000, 2000, 3000) is None
