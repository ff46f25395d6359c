"""At most `burst` console lines per `interval` for what peers make us refuse (pure): anyone on
the segment can make the node refuse packets as fast as the link carries them. The first `burst`
lines of a fixed window are shown, the rest counted in one line after it."""

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
        self._shown = self._dropped = 0

    def admit(self, now: float) -> Admit:
        suppressed = self.flush(now)
        if self._window_end is None:
            self._window_end = now + self.interval
        show = self._shown < self.burst
        self._shown += show
        self._dropped += not show
        return Admit(show, suppressed)

    def flush(self, now: float) -> int:
        """If the window is over, close it: the count of lines it dropped (report if > 0)."""
        if self._window_end is None or now < self._window_end:
            return 0
        dropped = self._dropped
        self._window_end, self._shown, self._dropped = None, 0, 0
        return dropped
