"""Nonces seen recently, so a signed request is accepted once.

A nonce need only be remembered while its timestamp is inside the allowed
skew: older requests are refused by the timestamp check anyway. The cache is
bounded; when full of live nonces it refuses new ones (fail closed) rather
than forgetting one that could then be replayed.
"""

from __future__ import annotations

import heapq


class ReplayCache:
    def __init__(self, window_s: int, max_entries: int = 100_000) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self._seen: set[tuple[str, str]] = set()
        self._expiry: list[tuple[int, str, str]] = []

    def __len__(self) -> int:
        return len(self._seen)

    def accept(self, publisher: str, nonce: str, timestamp: int, now: int) -> bool:
        """True (and remembered) the first time; False for a replay or when full."""
        while self._expiry and self._expiry[0][0] < now:
            _, p, n = heapq.heappop(self._expiry)
            self._seen.discard((p, n))
        key = (publisher, nonce)
        if key in self._seen or len(self._seen) >= self.max_entries:
            return False
        self._seen.add(key)
        heapq.heappush(self._expiry, (timestamp + self.window_s, publisher, nonce))
        return True
