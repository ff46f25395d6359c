"""The supervisor under random event orders: its invariants hold whatever happens."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from zosnode.agent.services.events import (
    SATISFIED,
    Action,
    Exited,
    Probe,
    ProbeResult,
    Signal,
    Spawn,
    Spawned,
    SpawnFailed,
)
from zosnode.agent.services.machine import Supervisor
from zosnode.trust.manifest import ServiceSpec


@st.composite
def releases(draw: st.DrawFn) -> list[ServiceSpec]:
    n = draw(st.integers(1, 5))
    specs = []
    for i in range(n):
        deps = draw(st.sets(st.integers(0, i - 1), max_size=2)) if i else set()
        specs.append(ServiceSpec(
            name=f"s{i}", flist="base", argv=("bin/x",),
            after=tuple(f"s{d}" for d in sorted(deps)),
            oneshot=draw(st.booleans()),
            ready=("bin/probe",) if draw(st.booleans()) else None,
            restart_initial_ms=draw(st.integers(0, 500)),
            restart_max_ms=2000,
            stop_timeout_ms=draw(st.integers(0, 1000)),
        ))
    return specs


class Model:
    """What the outside world knows: which runs were asked for, started, exited."""

    def __init__(self, sup: Supervisor, specs: list[ServiceSpec]) -> None:
        self.sup = sup
        self.specs = {s.name: s for s in specs}
        self.pending: dict[str, int] = {}  # spawn asked, not yet answered
        self.alive: dict[str, int] = {}  # started, not exited
        self.probes: dict[str, int] = {}
        self.stopped = False
        self.now = 0

    def apply(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Spawn):
                assert not self.stopped, "spawned after stop"
                assert a.name not in self.pending and a.name not in self.alive, "two runs"
                states = {s.name: s.state for s in self.sup.status()}
                for dep in self.specs[a.name].after:
                    assert states[dep] in SATISFIED, f"{a.name} before {dep}"
                self.pending[a.name] = a.run
            elif isinstance(a, Probe):
                self.probes[a.name] = a.run
            elif isinstance(a, Signal):
                assert a.name in self.pending or a.name in self.alive, "signal to nothing"


@settings(max_examples=300, deadline=None)
@given(releases(), st.lists(st.tuples(st.integers(0, 5), st.integers(0, 4), st.integers(-9, 3),
                                      st.integers(0, 3000)), max_size=60))
def test_invariants_under_random_orders(
    specs: list[ServiceSpec], steps: list[tuple[int, int, int, int]]
) -> None:
    sup = Supervisor(specs, probe_interval_ms=100)
    m = Model(sup, specs)
    m.apply(sup.start(0))
    names = [s.name for s in specs]

    def deliver(kind: int, name: str, code: int, dt: int) -> None:
        if kind == 0 and name in m.pending:
            run = m.pending.pop(name)
            m.alive[name] = run
            m.apply(sup.handle(Spawned(name, run, 1000 + run), m.now))
        elif kind == 1 and name in m.pending:
            run = m.pending.pop(name)
            m.apply(sup.handle(SpawnFailed(name, run, "no", code < 0), m.now))
        elif kind == 2 and name in m.alive:
            run = m.alive.pop(name)
            m.apply(sup.handle(Exited(name, run, code), m.now))
        elif kind == 3 and name in m.probes:
            run = m.probes.pop(name)
            m.apply(sup.handle(ProbeResult(name, run, code > 0), m.now))
        else:
            m.now += dt
            m.apply(sup.tick(m.now))

    for kind, who, code, dt in steps:
        deliver(kind, names[who % len(names)], code, dt)
        deadline = sup.next_deadline()
        assert deadline is None or deadline >= 0

    # Stop, then answer as a well-behaved world: every process eventually exits.
    m.stopped = True
    m.apply(sup.stop(m.now))
    for _ in range(10 * len(names) + 10):
        if sup.all_stopped:
            break
        for name in list(m.pending):
            m.alive[name] = m.pending.pop(name)
            m.apply(sup.handle(Spawned(name, m.alive[name], 1), m.now))
        for name in list(m.alive):
            m.apply(sup.handle(Exited(name, m.alive.pop(name), -15), m.now))
            # Time passes between exits: long enough for any restart to fire.
            m.now += 600
            m.apply(sup.tick(m.now))
        m.now += 5000
        m.apply(sup.tick(m.now))
    assert sup.all_stopped, [(s.name, s.state) for s in sup.status()]
    assert not m.alive and not m.pending
