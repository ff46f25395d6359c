"""The long commands' progress line: objects and bytes done, rate, time left.

Shown on stderr, redrawn at most ten times a second, only on a terminal: the
maintenance commands (`hub gc/verify/mirror`) ask whether stdout is one, the
commands whose stdout is their result (`flist create`, `flist extract`, `hub
push`) whether stderr is (`Meter.on_stderr`); a script piping the output, or
reading `--json`, sees nothing of it. The arithmetic is `MeterState.line`,
pure: the clock is passed in.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO

from zosnode.progress import Progress


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


@dataclass
class MeterState:
    name: str = ""
    objects: int = 0
    size: int = 0
    done_objects: int = 0
    done_bytes: int = 0
    started: float = 0.0
    unit: str = "objects"

    def line(self, now: float) -> str:
        took = max(now - self.started, 1e-6)
        done = human_bytes(self.done_bytes) + (f"/{human_bytes(self.size)}" if self.size else "")
        if self.objects or self.done_objects:
            parts = [f"{self.name}: {self.done_objects}"
                     + (f"/{self.objects}" if self.objects else "") + f" {self.unit}", done]
        else:  # bytes are all it counts
            parts = [f"{self.name}: {done}"]
        rate = self.done_bytes / took
        parts.append(f"{human_bytes(rate)}/s")
        if self.size and self.done_bytes and rate > 0:
            parts.append(f"{max(0.0, (self.size - self.done_bytes) / rate):.0f} s left")
        elif self.objects and self.done_objects:
            per = took / self.done_objects
            parts.append(f"{max(0.0, (self.objects - self.done_objects) * per):.0f} s left")
        return ", ".join(parts)


class Meter(Progress):
    def __init__(self, out: TextIO | None = None, *, show: bool | None = None) -> None:
        self.out = out or sys.stderr
        self.show = sys.stdout.isatty() if show is None else show
        self.state = MeterState()
        self.last = 0.0

    @classmethod
    def on_stderr(cls) -> Meter:
        """For a command whose stdout is its result: drawn when stderr is a terminal."""
        return cls(sys.stderr, show=sys.stderr.isatty())

    def phase(self, name: str, objects: int, size: int, unit: str = "objects") -> None:
        self._draw(force=True)
        self.state = MeterState(name, objects, size, started=time.monotonic(), unit=unit)

    def add(self, objects: int, size: int) -> None:
        self.state.done_objects += objects
        self.state.done_bytes += size
        self._draw()

    def update(self, done_objects: int, done_bytes: int, *, objects: int | None = None,
               size: int | None = None) -> None:
        """Set what is done so far (and the totals, once they are known)."""
        if objects is not None:
            self.state.objects = objects
        if size is not None:
            self.state.size = size
        self.state.done_objects, self.state.done_bytes = done_objects, done_bytes
        self._draw()

    def elapsed(self) -> float:
        return time.monotonic() - self.state.started if self.state.name else 0.0

    def note(self, line: str) -> None:
        if self.show:
            self.out.write(f"\r\x1b[K{line}\n")
            self.out.flush()

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.show or not self.state.name or (not force and now - self.last < 0.1):
            return
        self.last = now
        self.out.write(f"\r\x1b[K{self.state.line(now)}")
        self.out.flush()

    def finish(self) -> None:
        self._draw(force=True)
        if self.show and self.state.name:
            self.out.write("\n")
            self.out.flush()
