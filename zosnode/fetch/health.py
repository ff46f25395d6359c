"""Mirror health, pure (time passed in): a circuit breaker per mirror, ranking, bans.

One fault opens a circuit: nobody asks for a cool-down, then one trial decides (success
closes, failure re-opens for twice as long, capped): a dead mirror costs one fault
detection, not one per block, and one that comes back is used again by itself. Decaying
penalties rank the rest. A mirror that served a wrong copy is never asked for it again."""

import enum
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from zosnode.fetch.errors import FetchUsageError


class Fault(enum.Enum):
    ERROR = "error"  # refused connection, 5xx, protocol garbage
    STALL = "stall"  # a deadline passed: connect, head, no progress, attempt
    TRUNCATED = "truncated"  # body cut short
    CORRUPT = "corrupt"  # bytes that do not hash to the id
    MISSING = "missing"  # a 4xx: this object is not there; the mirror itself works


PENALTY = {Fault.ERROR: 1.0, Fault.STALL: 2.0, Fault.TRUNCATED: 1.0, Fault.CORRUPT: 16.0,
            Fault.MISSING: 0.5}


class Circuit(enum.Enum):
    CLOSED = "closed"  # asked normally
    OPEN = "open"  # cooling down; asked by nobody
    HALF_OPEN = "half-open"  # one trial request is out


class Pass(enum.Enum):  # what `admit` granted
    NORMAL = "normal"
    TRIAL = "trial"  # the half-open circuit's one request


@dataclass(frozen=True)
class BreakerPolicy:
    """Cool-down after the first fault, its doubling cap, and the trial's lease (for a trial
    never reported, a bug: a cancelled one is reported abandoned and frees the slot)."""

    cooldown_s: float = 1.0
    max_cooldown_s: float = 30.0
    trial_lease_s: float = 15.0

    def __post_init__(self) -> None:
        if not 0 < self.cooldown_s <= self.max_cooldown_s:
            raise FetchUsageError("breaker needs 0 < cooldown <= max_cooldown")
        if self.trial_lease_s <= 0:
            raise FetchUsageError("trial_lease_s must be positive")


class Breaker:
    """One circuit (see the module note); only the trial's outcome moves an open one."""

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self.state = Circuit.CLOSED
        self._until = 0.0  # OPEN: end of the cool-down; HALF_OPEN: end of the lease
        self._cooldown = policy.cooldown_s

    def admit(self, now: float, *, early: bool = False) -> Pass | None:
        """A pass, or None while cooling down or the trial is out. `early`: the trial may start
        before the cool-down ends, for a caller that paces its own retries (manifest polls)."""
        if self.state is Circuit.CLOSED:
            return Pass.NORMAL
        if now < self._until and (self.state is Circuit.HALF_OPEN or not early):
            return None
        self.state = Circuit.HALF_OPEN
        self._until = now + self.policy.trial_lease_s
        return Pass.TRIAL

    def ready_at(self, now: float) -> float:
        """The earliest time `admit` may say yes (a trial in flight: its lease end)."""
        return now if self.state is Circuit.CLOSED else max(now, self._until)

    @property
    def trial_pending(self) -> bool:
        return self.state is Circuit.HALF_OPEN

    def succeeded(self, now: float, grant: Pass) -> None:
        if self.state is Circuit.CLOSED or grant is Pass.TRIAL:
            self.state = Circuit.CLOSED
            self._cooldown = self.policy.cooldown_s

    def failed(self, now: float, grant: Pass) -> None:
        if self.state is not Circuit.CLOSED:
            if grant is not Pass.TRIAL:
                return
            self._cooldown = min(self._cooldown * 2, self.policy.max_cooldown_s)
        self.state = Circuit.OPEN  # from closed: the first cool-down (`succeeded` reset it)
        self._until = now + self._cooldown

    def abandoned(self, now: float, grant: Pass) -> None:
        """A request ended without an outcome (cancelled): a trial slot is freed."""
        if grant is Pass.TRIAL and self.state is Circuit.HALF_OPEN:
            self.state = Circuit.OPEN
            self._until = now


@dataclass(frozen=True)
class Incident:
    """A mirror served a wrong copy of `object_id` at `at` (caller's clock)."""

    mirror: str
    object_id: str
    at: float


class MirrorHealth:
    def __init__(self, mirrors: Sequence[str], *, half_life_s: float = 30.0,
                 breaker: BreakerPolicy | None = None) -> None:
        if half_life_s <= 0:
            raise FetchUsageError("half_life_s must be positive")
        self._half_life = half_life_s
        self._policy = breaker or BreakerPolicy()
        self.mirrors: tuple[str, ...] = ()
        self._penalty: dict[str, tuple[float, float]] = {}  # mirror -> (penalty, as of)
        self._breakers: dict[str, Breaker] = {}
        self.set_mirrors(mirrors)
        # (mirror, object id) pairs never to ask again; bounded (`served_wrong`), oldest dropped.
        self._banned: dict[tuple[str, str], None] = {}
        self.incidents: deque[Incident] = deque(maxlen=256)

    def set_mirrors(self, mirrors: Sequence[str]) -> None:
        """A known mirror keeps its health (a hub dead at boot stays demoted when named again)."""
        if not mirrors:
            raise FetchUsageError("at least one mirror is needed")
        if len(set(mirrors)) != len(mirrors):
            raise FetchUsageError("mirrors must be distinct")
        self.mirrors = tuple(mirrors)
        self._penalty = {m: self._penalty.get(m, (0.0, 0.0)) for m in mirrors}
        self._breakers = {m: self._breakers.get(m) or Breaker(self._policy) for m in mirrors}

    def penalty(self, mirror: str, now: float) -> float:
        penalty, updated = self._penalty[mirror]
        return float(penalty * 0.5 ** (max(0.0, now - updated) / self._half_life))

    def breaker(self, mirror: str) -> Breaker:
        return self._breakers[mirror]

    def _usable(self, object_id: str) -> list[str]:
        return [m for m in self.mirrors if (m, object_id) not in self._banned]

    def order(self, object_id: str, now: float) -> list[str]:
        """Closed circuits healthiest first, then by when they may be tried; no liars."""

        def key(m: str) -> tuple[bool, float, float]:  # ties keep the given order (stable)
            b = self._breakers[m]
            return b.state is not Circuit.CLOSED, b.ready_at(now), round(self.penalty(m, now), 3)

        return sorted(self._usable(object_id), key=key)

    def ready_at(self, object_id: str, now: float) -> float | None:
        """When some mirror usable for `object_id` may next be asked; None: none is."""
        times = [self._breakers[m].ready_at(now) for m in self._usable(object_id)]
        return min(times) if times else None

    def trial_pending(self, object_id: str) -> bool:
        """Whether a trial is out to a mirror usable for `object_id` (it may close early)."""
        return any(self._breakers[m].trial_pending for m in self._usable(object_id))

    def succeeded(self, mirror: str, now: float, grant: Pass = Pass.NORMAL) -> None:
        self._penalty[mirror] = (self.penalty(mirror, now) / 2, now)
        self._breakers[mirror].succeeded(now, grant)

    def failed(self, mirror: str, fault: Fault, now: float, grant: Pass = Pass.NORMAL) -> None:
        self._penalty[mirror] = (self.penalty(mirror, now) + PENALTY[fault], now)
        if fault is not Fault.MISSING:  # the mirror is broken: open its circuit
            self._breakers[mirror].failed(now, grant)
        else:  # the mirror answered: it works, even if it lacks this object
            self._breakers[mirror].succeeded(now, grant)

    def served_wrong(self, mirror: str, object_id: str, now: float,
                     grant: Pass = Pass.NORMAL) -> None:
        self.failed(mirror, Fault.CORRUPT, now, grant)
        self._banned[(mirror, object_id)] = None
        if len(self._banned) > 65536:
            del self._banned[next(iter(self._banned))]
        self.incidents.append(Incident(mirror, object_id, now))
