"""Mirror health scoring: pure bookkeeping, time passed in by the caller.

Each failure adds a penalty that decays by half every `half_life_s`, so a
mirror that errored, stalled or lied sinks in the order and floats back up
once it behaves. A mirror that served a wrong copy of an object is never
asked for that object again, and the incident is kept for reporting.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from zosnode.fetch.errors import FetchUsageError


class Fault(enum.Enum):
    ERROR = "error"  # refused connection, 5xx, protocol garbage
    STALL = "stall"  # a deadline passed
    TRUNCATED = "truncated"  # body cut short
    CORRUPT = "corrupt"  # bytes that do not hash to the id

    @property
    def penalty(self) -> float:
        return _PENALTY[self]


_PENALTY = {Fault.ERROR: 1.0, Fault.STALL: 2.0, Fault.TRUNCATED: 1.0, Fault.CORRUPT: 16.0}


@dataclass(frozen=True)
class Incident:
    """A mirror served a wrong copy of `object_id` at time `at` (caller's clock)."""

    mirror: str
    object_id: str
    at: float


@dataclass
class _State:
    penalty: float = 0.0
    updated: float = 0.0
    successes: int = 0
    failures: int = 0


class MirrorHealth:
    def __init__(
        self,
        mirrors: Sequence[str],
        *,
        half_life_s: float = 30.0,
        max_banned: int = 65536,
        max_incidents: int = 256,
    ) -> None:
        if not mirrors:
            raise FetchUsageError("at least one mirror is needed")
        if len(set(mirrors)) != len(mirrors):
            raise FetchUsageError("mirrors must be distinct")
        if half_life_s <= 0:
            raise FetchUsageError("half_life_s must be positive")
        self.mirrors = tuple(mirrors)
        self._half_life = half_life_s
        self._state = {m: _State() for m in mirrors}
        # (mirror, object id) pairs never to ask again; bounded, oldest dropped.
        self._banned: dict[tuple[str, str], None] = {}
        self._max_banned = max_banned
        self.incidents: deque[Incident] = deque(maxlen=max_incidents)

    def penalty(self, mirror: str, now: float) -> float:
        st = self._state[mirror]
        elapsed = max(0.0, now - st.updated)
        return float(st.penalty * 0.5 ** (elapsed / self._half_life))

    def order(self, object_id: str, now: float) -> list[str]:
        """Mirrors to try for `object_id`, healthiest first, liars for it left out."""
        usable = [m for m in self.mirrors if (m, object_id) not in self._banned]
        rank = {m: i for i, m in enumerate(self.mirrors)}
        return sorted(usable, key=lambda m: (round(self.penalty(m, now), 3), rank[m]))

    def succeeded(self, mirror: str, now: float) -> None:
        st = self._state[mirror]
        st.penalty = self.penalty(mirror, now) / 2
        st.updated = now
        st.successes += 1

    def failed(self, mirror: str, fault: Fault, now: float) -> None:
        st = self._state[mirror]
        st.penalty = self.penalty(mirror, now) + fault.penalty
        st.updated = now
        st.failures += 1

    def served_wrong(self, mirror: str, object_id: str, now: float) -> None:
        self.failed(mirror, Fault.CORRUPT, now)
        self._banned[(mirror, object_id)] = None
        if len(self._banned) > self._max_banned:
            del self._banned[next(iter(self._banned))]
        self.incidents.append(Incident(mirror, object_id, now))

    def stats(self, mirror: str) -> tuple[int, int]:
        st = self._state[mirror]
        return st.successes, st.failures
