"""A bound on console lines caused by peers: at most `burst` per `interval`.

Anyone on the segment can make the node refuse packets as fast as the link
carries them; each refusal is worth a line, but a flood must not drown the
console. Pure: the caller passes the time. Fixed windows: the first `burst`
lines of a window are shown, the rest counted, and the count is reported in
one summary line once the window is over (at the next line or `flush`).
"""

from __future__ import annotations

from dataclasses import dataclass

from zosnode.net.errors import NetUsageError


@dataclass(frozen=True)
class Admit:
    show: bool  # print this line
    suppressed: int  # before it, say that this many lines of the last window were dropped


class LineLimit:
    def __init__(self, burst: int = 10, interval: float = 10.0) -> None:
        if burst < 1 or interval <= 0:
            raise NetUsageError("line limit: burst and interval must be positive")
        self.burst = burst
        self.interval = interval
        self._window_end: float | None = None
        self._shown = 0
        self._dropped = 0

    def admit(self, now: float) -> Admit:
        """One line wants out at `now`."""
        suppressed = self.flush(now)
        if self._window_end is None:
            self._window_end = now + self.interval
            self._shown = 0
        if self._shown < self.burst:
            self._shown += 1
            return Admit(True, suppressed)
        self._dropped += 1
        return Admit(False, suppressed)

    def flush(self, now: float) -> int:
        """If the window is over, close it: the count of lines it dropped (report if > 0)."""
        if self._window_end is None or now < self._window_end:
            return 0
        dropped, self._dropped = self._dropped, 0
        self._window_end = None
        return dropped

    @property
    def pending(self) -> int:
        """Lines dropped in the current window so far."""
        return self._dropped
