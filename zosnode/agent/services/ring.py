"""A service's output cut into lines for the console (sans-IO): only the line being assembled
is kept, cut at `max_line`, so a service that never prints a newline cannot grow it."""


class OutputLines:
    def __init__(self, max_line: int = 4096) -> None:
        if max_line < 1:
            raise ValueError("need max_line >= 1")
        self.max_line = max_line
        self._partial = bytearray()

    def feed(self, data: bytes) -> list[str]:
        self._partial += data
        done: list[str] = []
        while True:
            nl = self._partial.find(b"\n", 0, self.max_line + 1)
            if nl >= 0:
                done.append(_text(self._partial[:nl]))
                del self._partial[:nl + 1]
            elif len(self._partial) > self.max_line:  # cut without a newline
                done.append(_text(self._partial[:self.max_line]))
                del self._partial[:self.max_line]
            else:
                return done

    def close(self) -> list[str]:
        """The stream ended: a trailing partial line counts as a line."""
        done = [_text(self._partial)] if self._partial else []
        self._partial.clear()
        return done


def _text(line: bytearray) -> str:
    return line.rstrip(b"\r").decode("utf-8", "replace")
