"""The supervisor of one release's services, sans-IO: events and the clock in, actions out; the
caller sleeps until `next_deadline()`, then calls `tick(now)`. The rules: docs/node-run.md."""

import signal as _signal
from collections.abc import Sequence
from dataclasses import dataclass

from zosnode.agent.services import events
from zosnode.agent.services.errors import SupervisorUsageError
from zosnode.agent.services.events import SATISFIED, TERMINAL, Action, Event, State
from zosnode.trust.errors import TrustUsageError
from zosnode.trust.manifest import ServiceSpec, start_order

PROBE_INTERVAL_MS = 250
_LIVE = frozenset({State.STARTING, State.RUNNING, State.READY, State.STOPPING})
_DEAD_END = frozenset({State.FAILED, State.REFUSED, State.BLOCKED})


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: State
    oneshot: bool
    pid: int | None
    restarts: int
    last_exit: int | None
    detail: str


@dataclass
class _Svc:
    spec: ServiceSpec
    state: State = State.WAITING
    detail: str = ""
    run: int = 0
    pid: int | None = None
    started_at: int = 0
    failures: int = 0
    restarts: int = 0
    last_exit: int | None = None
    deadline: int | None = None
    probing: bool = False


def restart_delay_ms(spec: ServiceSpec, failures: int) -> int:
    if failures < 1:
        raise SupervisorUsageError("failures counts from 1")
    return min(spec.restart_initial_ms << min(failures - 1, 48), spec.restart_max_ms)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {_signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class Supervisor:
    def __init__(self, specs: Sequence[ServiceSpec], *,
                 probe_interval_ms: int = PROBE_INTERVAL_MS) -> None:
        if probe_interval_ms < 1:
            raise SupervisorUsageError("probe_interval_ms must be at least 1")
        try:
            order = start_order(specs)
        except TrustUsageError as exc:
            raise SupervisorUsageError(str(exc)) from None
        by_name = {s.name: s for s in specs}
        self._svcs = {name: _Svc(by_name[name]) for name in order}  # in start order
        self._probe_interval = probe_interval_ms
        self._now = -(1 << 63)  # no step yet: any time goes
        self._out: list[Action] = []
        self._started = self._stopping = False

    def status(self) -> tuple[ServiceStatus, ...]:
        return tuple(ServiceStatus(s.spec.name, s.state, s.spec.oneshot, s.pid, s.restarts,
                                   s.last_exit, s.detail) for s in self._svcs.values())

    @property
    def all_ready(self) -> bool:
        return all(s.state in SATISFIED for s in self._svcs.values())

    @property
    def dead_ends(self) -> tuple[str, ...]:
        return tuple(n for n, s in self._svcs.items() if s.state in _DEAD_END)

    @property
    def all_stopped(self) -> bool:
        return self._stopping and all(s.state in TERMINAL for s in self._svcs.values())

    def next_deadline(self) -> int | None:
        return min((s.deadline for s in self._svcs.values() if s.deadline is not None),
                   default=None)

    def start(self, now: int) -> list[Action]:
        out = self._step(now)
        if self._started:
            raise SupervisorUsageError("the supervisor was already started")
        self._started = True
        self._start_eligible()
        return out

    def handle(self, event: Event, now: int) -> list[Action]:
        out = self._step(now)
        svc = self._svcs.get(event.name)
        if svc is None:
            raise SupervisorUsageError(f"no service named {event.name!r} in this release")
        if event.run != svc.run:
            return out  # news about an earlier run
        if isinstance(event, events.Spawned):
            self._on_spawned(svc, event)
        elif isinstance(event, events.SpawnFailed):
            self._on_spawn_failed(svc, event)
        elif isinstance(event, events.Exited):
            self._on_exited(svc, event.code)
        elif isinstance(event, events.ProbeResult):
            self._on_probe(svc, event.ok)
        return out

    def tick(self, now: int) -> list[Action]:
        out = self._step(now)
        for name, svc in self._svcs.items():
            if svc.deadline is None or svc.deadline > now:
                continue
            svc.deadline = None
            # While stopping, no restart: it stops once its dependants have (_stop_eligible).
            if svc.state is State.BACKOFF and not self._stopping:
                down = [d for d in svc.spec.after if self._svcs[d].state not in SATISFIED]
                if down:
                    # A restart is a start: it waits for its dependencies like the first.
                    self._set(svc, State.WAITING, f"restart waits for {down[0]}")
                else:
                    self._spawn(svc)
            elif svc.state is State.RUNNING and not svc.probing:
                self._probe(svc)
            elif svc.state is State.STOPPING:
                out.append(events.Signal(name, svc.run, "SIGKILL"))
                self._set(svc, State.STOPPING,
                          f"no exit after {svc.spec.stop_timeout_ms} ms: SIGKILL")
        return out

    def stop(self, now: int) -> list[Action]:
        """Stop every service, dependants first. Idempotent."""
        out = self._step(now)
        self._stopping = True
        self._stop_eligible()
        return out

    def _step(self, now: int) -> list[Action]:
        """Begin a step at `now`: the transitions append their actions to the list returned."""
        if now < self._now:
            raise SupervisorUsageError(f"time went backwards: {now} < {self._now}")
        self._now = now
        self._out = []
        return self._out

    def _on_spawned(self, svc: _Svc, ev: events.Spawned) -> None:
        if svc.state not in (State.STARTING, State.STOPPING):
            return
        svc.pid = ev.pid
        if svc.state is State.STOPPING:
            # The stop raced the spawn: the signal went nowhere, send it again.
            self._out.append(events.Signal(svc.spec.name, svc.run, svc.spec.stop_signal))
            return
        svc.started_at = self._now
        if svc.spec.oneshot:
            self._set(svc, State.RUNNING, f"pid {ev.pid}")
        elif svc.spec.ready is None:
            self._set(svc, State.READY, f"pid {ev.pid}")
            self._start_eligible()
        else:
            self._set(svc, State.RUNNING, f"pid {ev.pid}, waiting for readiness")
            self._probe(svc)

    def _on_spawn_failed(self, svc: _Svc, ev: events.SpawnFailed) -> None:
        if svc.state is State.STOPPING:
            self._stopped(svc, f"never started: {ev.reason}")
            return
        if svc.state is not State.STARTING:
            return
        svc.pid = None
        if ev.refused:
            self._dead_end(svc, State.REFUSED, f"exec refused: {ev.reason}")
        else:
            self._crashed(svc, f"could not start: {ev.reason}", 127)

    def _on_exited(self, svc: _Svc, code: int) -> None:
        svc.pid = None
        svc.probing = False
        svc.last_exit = code
        if svc.state is State.STOPPING or self._stopping:
            self._stopped(svc, describe_exit(code))
            return
        if svc.state not in (State.STARTING, State.RUNNING, State.READY):
            return
        if svc.spec.oneshot and code == 0:
            svc.failures = 0
            self._set(svc, State.DONE, "exited with code 0")
            self._start_eligible()
            return
        self._crashed(svc, describe_exit(code), code)

    def _crashed(self, svc: _Svc, why: str, code: int) -> None:
        svc.last_exit = code
        if svc.spec.oneshot:
            self._dead_end(svc, State.FAILED, why)
            return
        ran_ms = self._now - svc.started_at
        if ran_ms >= svc.spec.restart_max_ms and svc.state is not State.STARTING:
            svc.failures = 0  # it ran long enough: this is a new crash, not a crash loop
        svc.failures += 1
        delay = restart_delay_ms(svc.spec, svc.failures)
        svc.deadline = self._now + delay
        self._set(svc, State.BACKOFF, f"{why}; restart in {delay} ms")

    def _on_probe(self, svc: _Svc, ok: bool) -> None:
        svc.probing = False
        if svc.state is not State.RUNNING or svc.spec.oneshot:
            return
        if ok:
            svc.deadline = None
            self._set(svc, State.READY, f"pid {svc.pid}, ready")
            self._start_eligible()
        else:
            svc.deadline = self._now + self._probe_interval

    def _stopped(self, svc: _Svc, why: str) -> None:
        svc.deadline = svc.pid = None
        self._set(svc, State.STOPPED, why)
        self._stop_eligible()

    def _dead_end(self, svc: _Svc, state: State, why: str) -> None:
        svc.deadline = None
        self._set(svc, state, why)
        # Block dependants transitively; the order is topological, so one pass suffices.
        for other in self._svcs.values():
            if other.state is not State.WAITING:
                continue
            bad = [d for d in other.spec.after if self._svcs[d].state in _DEAD_END]
            if bad:
                self._set(other, State.BLOCKED, f"dependency {bad[0]} "
                          f"{self._svcs[bad[0]].state.value}")
        if self._stopping:
            self._stop_eligible()

    def _start_eligible(self) -> None:
        if self._stopping or not self._started:
            return
        for svc in self._svcs.values():
            if svc.state is State.WAITING and all(self._svcs[d].state in SATISFIED
                                                  for d in svc.spec.after):
                self._spawn(svc)

    def _stop_eligible(self) -> None:
        for name, svc in reversed(self._svcs.items()):
            if svc.state in TERMINAL or svc.state is State.STOPPING:
                continue
            if any(s.state not in TERMINAL for s in self._svcs.values() if name in s.spec.after):
                continue  # a dependant still runs
            if svc.state in _LIVE:
                self._out.append(events.Signal(name, svc.run, svc.spec.stop_signal))
                svc.deadline = self._now + svc.spec.stop_timeout_ms
                self._set(svc, State.STOPPING, f"sent {svc.spec.stop_signal}")
            else:
                svc.deadline = None
                self._set(svc, State.STOPPED, f"stopped while {svc.state.value}")
                # Its dependencies may now be stoppable: walk again.
                self._stop_eligible()
                return

    def _spawn(self, svc: _Svc) -> None:
        if svc.run > 0:
            svc.restarts += 1
        svc.run += 1
        svc.deadline = None
        env = tuple(sorted(svc.spec.env.items()))
        self._out.append(events.Spawn(svc.spec.name, svc.run, svc.spec.argv, env))
        self._set(svc, State.STARTING, f"run {svc.run}")

    def _probe(self, svc: _Svc) -> None:
        assert svc.spec.ready is not None
        svc.probing = True
        self._out.append(events.Probe(svc.spec.name, svc.run, svc.spec.ready))

    def _set(self, svc: _Svc, state: State, detail: str) -> None:
        svc.state = state
        svc.detail = detail
        self._out.append(events.StateChanged(svc.spec.name, state, detail, self._now))
