"""A bounded ring of a service's output lines (sans-IO).

Bytes go in as they arrive; complete lines come out (to be mirrored to the
console) and the newest lines are kept within `max_bytes`. An over-long line
is cut at `max_line` so a service that never prints a newline cannot grow the
buffer without bound.
"""

from __future__ import annotations

from collections import deque


class OutputRing:
    def __init__(self, max_bytes: int = 64 * 1024, max_line: int = 4096) -> None:
        if not 0 < max_line <= max_bytes:
            raise ValueError("need 0 < max_line <= max_bytes")
        self.max_bytes = max_bytes
        self.max_line = max_line
        self._lines: deque[bytes] = deque()
        self._size = 0
        self._partial = bytearray()
        self.dropped = 0  # lines pushed out by newer ones

    def feed(self, data: bytes) -> list[str]:
        """Take a chunk of output; return the lines it completed."""
        done: list[str] = []
        self._partial += data
        while True:
            nl = self._partial.find(b"\n")
            if nl < 0 or nl > self.max_line:
                if len(self._partial) <= self.max_line:
                    break
                nl = self.max_line  # cut without a newline
                line, rest = bytes(self._partial[:nl]), self._partial[nl:]
            else:
                line, rest = bytes(self._partial[:nl]), self._partial[nl + 1 :]
            self._partial = bytearray(rest)
            self._keep(line)
            done.append(_text(line))
        return done

    def close(self) -> list[str]:
        """The stream ended: a trailing partial line counts as a line."""
        if not self._partial:
            return []
        line = bytes(self._partial)
        self._partial.clear()
        self._keep(line)
        return [_text(line)]

    def lines(self) -> tuple[str, ...]:
        return tuple(_text(b) for b in self._lines)

    @property
    def size(self) -> int:
        return self._size

    def _keep(self, line: bytes) -> None:
        self._lines.append(line)
        self._size += len(line) + 1
        while self._size > self.max_bytes:
            self._size -= len(self._lines.popleft()) + 1
            self.dropped += 1


def _text(line: bytes) -> str:
    return line.rstrip(b"\r").decode("utf-8", "replace")
