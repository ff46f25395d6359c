"""Boot time by phase, from the agent process's start: printed at ready, carried by heartbeats.

Light on imports: `node run` marks the first phases before the boot stage is imported."""

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

# The boot phases in the order they end; "cache" is finding and checking the cache disk.
PHASES = ("modules", "network", "cache", "manifest", "mounts", "services", "ready")


def _boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def process_start(stat: Path = Path("/proc/self/stat")) -> float | None:
    """When this process started, in seconds since boot (CLOCK_BOOTTIME), or None."""
    try:
        fields = stat.read_text().rpartition(")")[2].split()
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
    except (OSError, IndexError, ValueError):
        return None


class BootClock:
    """Each boot phase's end, in ms from the process's start (the interpreter's start counts)."""

    def __init__(self, clock: Callable[[], float] = _boottime, start: float | None = None) -> None:
        self._clock = clock
        self.start = start if start is not None else (process_start() or clock())
        self.ends: dict[str, int] = {}

    def mark(self, phase: str) -> None:
        """The end of `phase`; only the first counts (an upgrade is no boot phase)."""
        self.ends.setdefault(phase, max(0, round((self._clock() - self.start) * 1000)))


def phases_message(ends_ms: Mapping[str, int]) -> str:
    parts, before = [], 0
    for name in PHASES:
        if name in ends_ms:
            parts.append(f"{name} {max(0, ends_ms[name] - before) / 1000:.1f}s")
            before = max(before, ends_ms[name])
    return (f"boot phases: {' '.join(parts) or '-'}; "
            f"ready {before / 1000:.1f}s after the agent started")


def memory_message(status: Path = Path("/proc/self/status")) -> str:
    """`agent memory: 38.2 MiB resident, peak 40.1 MiB` (not the mount children's)."""
    try:
        kib = {k: int(v.split()[0]) for k, _, v in
               (line.partition(":") for line in status.read_text().splitlines())
               if k in ("VmRSS", "VmHWM")}
        return (f"agent memory: {kib['VmRSS'] / 1024:.1f} MiB resident, "
                f"peak {kib['VmHWM'] / 1024:.1f} MiB")
    except (OSError, KeyError, ValueError, IndexError) as exc:
        return f"agent memory: unknown ({type(exc).__name__})"
