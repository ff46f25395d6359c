"""Events into the supervisor, actions out; times are integer ms on the caller's monotonic clock.
An event about a process carries its `Spawn`'s (or `Probe`'s) `run`: older runs' news is dropped."""

import enum
from dataclasses import dataclass


class State(enum.Enum):
    WAITING = "waiting"  # dependencies not satisfied yet
    STARTING = "starting"  # spawn asked for, not confirmed
    RUNNING = "running"  # long-running, readiness probe not yet passed
    READY = "ready"  # long-running and ready
    DONE = "done"  # one-shot exited 0
    BACKOFF = "backoff"  # crashed, waiting for the restart delay
    FAILED = "failed"  # one-shot exited non-zero: terminal
    REFUSED = "refused"  # exec refused (outside verified mounts): terminal
    BLOCKED = "blocked"  # a dependency failed or was refused: terminal
    STOPPING = "stopping"  # stop signal sent, waiting for exit
    STOPPED = "stopped"


SATISFIED = frozenset({State.READY, State.DONE})  # what a dependant's `after` waits for
TERMINAL = frozenset({State.FAILED, State.REFUSED, State.BLOCKED, State.STOPPED})  # until a stop


@dataclass(frozen=True)
class _OfRun:
    name: str
    run: int


@dataclass(frozen=True)
class Spawned(_OfRun):
    pid: int


@dataclass(frozen=True)
class SpawnFailed(_OfRun):
    reason: str
    refused: bool  # True: the allow-list said no; terminal, never retried


@dataclass(frozen=True)
class Exited(_OfRun):
    code: int  # negative: killed by that signal number


@dataclass(frozen=True)
class ProbeResult(_OfRun):
    ok: bool


Event = Spawned | SpawnFailed | Exited | ProbeResult


@dataclass(frozen=True)
class Spawn(_OfRun):
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Probe(_OfRun):
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Signal(_OfRun):
    signal: str  # "SIGTERM", ... ; "SIGKILL" when the stop timeout passed


@dataclass(frozen=True)
class StateChanged:
    name: str
    state: State
    detail: str
    at_ms: int


Action = Spawn | Probe | Signal | StateChanged
