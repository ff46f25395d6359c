"""Exponential backoff with full jitter: pure, the random draw is an argument."""

from dataclasses import dataclass

from zosnode.fetch.errors import FetchUsageError


@dataclass(frozen=True)
class Backoff:
    """Delay before retry `attempt` (0-based): min(cap, base*2^n) times `draw`, in [0, 1)."""

    base_s: float = 0.05
    cap_s: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise FetchUsageError("backoff needs 0 < base <= cap")

    def delay(self, attempt: int, draw: float) -> float:
        if attempt < 0 or not 0.0 <= draw < 1.0:
            raise FetchUsageError("attempt must be >= 0 and draw in [0, 1)")
        return min(self.cap_s, self.base_s * float(2 ** min(attempt, 32))) * draw
