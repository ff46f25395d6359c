"""Sequential-read detection for readahead: pure, per open file."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ReadPattern:
    """Tracks one open file; says which byte range to fetch ahead, if any.

    Two reads in a row that continue each other make a stream; each read in
    a stream asks for `window` bytes past its end, but only the part not
    already asked for, so a stream fetches every block ahead once.
    """

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
