"""Sequential-read detection for readahead (pure)."""

from dataclasses import dataclass


@dataclass
class ReadPattern:
    """One open file's reads: in a stream (reads that continue each other), each asks for
    `window` bytes past its end, the part not yet asked for only."""

    window: int
    _next: int = 0  # a read from the start opens a stream
    _ahead_to: int = 0

    def observe(self, offset: int, size: int, file_size: int) -> tuple[int, int] | None:
        sequential = offset == self._next
        self._next = offset + size
        if not sequential:
            self._ahead_to = self._next
            return None
        start = max(self._next, self._ahead_to)
        end = min(file_size, self._next + self.window)
        if start >= end:
            return None
        self._ahead_to = end
        return start, end
