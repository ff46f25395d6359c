"""A service's output, cut into lines for the console (sans-IO).

Bytes go in as they arrive; complete lines come out, to be mirrored to the
console as `[name] line`. Nothing is kept beyond the line being assembled,
and an over-long line is cut at `max_line`, so a service that never prints a
newline cannot grow the buffer without bound.
"""

from __future__ import annotations


class OutputLines:
    def __init__(self, max_line: int = 4096) -> None:
        if max_line < 1:
            raise ValueError("need max_line >= 1")
        self.max_line = max_line
        self._partial = bytearray()

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
            done.append(_text(line))
        return done

    def close(self) -> list[str]:
        """The stream ended: a trailing partial line counts as a line."""
        if not self._partial:
            return []
        line = bytes(self._partial)
        self._partial.clear()
        return [_text(line)]


def _text(line: bytes) -> str:
    return line.rstrip(b"\r").decode("utf-8", "replace")
