"""The console rate limit for refusals: a burst per window, then one summary line."""

from __future__ import annotations

import pytest

from zosnode.net.errors import NetUsageError
from zosnode.net.loglimit import Admit, LineLimit


def test_burst_then_suppressed_then_summary_at_the_next_line() -> None:
    lim = LineLimit(burst=3, interval=10.0)
    got = [lim.admit(0.1 * i) for i in range(100)]  # a flood: 100 lines in 10 s
    assert [a.show for a in got] == [True] * 3 + [False] * 97
    assert all(a.suppressed == 0 for a in got)
    assert lim.admit(10.5) == Admit(True, 97)  # the new window says what the old one dropped
    assert lim.flush(20.5) == 0  # ... and starts its own count from zero


def test_flush_reports_once_the_window_is_over() -> None:
    lim = LineLimit(burst=1, interval=5.0)
    lim.admit(0.0)
    lim.admit(1.0)
    lim.admit(2.0)
    assert lim.flush(4.9) == 0
    assert lim.flush(5.0) == 2
    assert lim.flush(6.0) == 0  # said once
    assert lim.admit(6.0) == Admit(True, 0)


def test_quiet_traffic_is_never_limited() -> None:
    lim = LineLimit(burst=2, interval=1.0)
    assert all(lim.admit(float(t)).show for t in range(50))


def test_bound_under_any_flood() -> None:
    lim = LineLimit(burst=10, interval=10.0)
    shown = summaries = 0
    for i in range(100_000):  # 1,000 lines a second for 100 s
        a = lim.admit(i / 1000)
        shown += a.show
        summaries += a.suppressed > 0
    assert shown == 100 and summaries == 9  # 10 windows: 10 lines each + a summary


def test_bad_limits_are_our_error() -> None:
    with pytest.raises(NetUsageError):
        LineLimit(0, 1.0)
    with pytest.raises(NetUsageError):
        LineLimit(1, 0.0)
