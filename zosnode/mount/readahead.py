"""Sequential-read detection for readahead (pure)."""

from dataclasses import dataclass


@dataclass
class ReadPattern:
    """One file handle's reads: each in a stream asks `window` bytes past it, the new part only."""

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
