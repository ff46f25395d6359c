"""What long work reports as it goes (hub gc, verify, mirror, push; flist builds).

The default shows nothing; the command line's terminal meter
(`zosnode.cli.meter.Meter`) is one. Kept apart so the meter and the hub's
maintenance code share it without either importing the other.
"""

from __future__ import annotations


class Progress:
    """`phase` starts a step with its totals (objects, bytes; 0 when unknown);
    `add` counts what was done in it; `note` is a line to show."""

    def phase(self, name: str, objects: int, size: int) -> None:
        return None

    def add(self, objects: int, size: int) -> None:
        return None

    def note(self, line: str) -> None:
        return None
