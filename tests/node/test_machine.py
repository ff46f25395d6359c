"""The supervisor's state machine, driven with plain integers and trio's mock clock."""

from __future__ import annotations

import pytest
import trio

from zosnode.agent.services.errors import SupervisorUsageError
from zosnode.agent.services.events import (
    Action,
    Exited,
    Probe,
    ProbeResult,
    Signal,
    Spawn,
    Spawned,
    SpawnFailed,
    State,
    StateChanged,
)
from zosnode.agent.services.machine import Supervisor, describe_exit, restart_delay_ms
from zosnode.trust.manifest import ServiceSpec


def svc(name: str, **kw: object) -> ServiceSpec:
    kw.setdefault("argv", ("bin/" + name,))
    return ServiceSpec(name=name, flist="base", **kw)  # type: ignore[arg-type]


def spawns(actions: list[Action]) -> list[Spawn]:
    return [a for a in actions if isinstance(a, Spawn)]


def kinds(actions: list[Action]) -> list[str]:
    return [type(a).__name__ for a in actions if not isinstance(a, StateChanged)]


def state(sup: Supervisor, name: str) -> State:
    return next(s.state for s in sup.status() if s.name == name)


def start_one(sup: Supervisor, name: str, run: int, now: int, pid: int = 100) -> list[Action]:
    return sup.handle(Spawned(name, run, pid), now)


def test_independent_services_all_spawn_at_start() -> None:
    sup = Supervisor([svc("a"), svc("b")])
    out = sup.start(0)
    assert [s.name for s in spawns(out)] == ["a", "b"]
    assert spawns(out)[0].argv == ("bin/a",)
    assert state(sup, "a") is State.STARTING


def test_env_is_passed_sorted() -> None:
    sup = Supervisor([svc("a", env={"Z": "1", "A": "2"})])
    (sp,) = spawns(sup.start(0))
    assert sp.env == (("A", "2"), ("Z", "1"))


def test_dependant_waits_for_readiness_then_starts() -> None:
    sup = Supervisor([svc("web", after=("db",)), svc("db", ready=("bin/ping",))])
    out = sup.start(0)
    assert [s.name for s in spawns(out)] == ["db"]
    assert state(sup, "web") is State.WAITING
    out = start_one(sup, "db", 1, 10)
    assert kinds(out) == ["Probe"]
    assert state(sup, "db") is State.RUNNING
    out = sup.handle(ProbeResult("db", 1, False), 20)
    assert spawns(out) == [] and sup.next_deadline() == 20 + 250
    assert sup.tick(100) == []  # not yet
    out = sup.tick(270)
    assert out == [Probe("db", 1, ("bin/ping",))]
    assert sup.next_deadline() is None  # one probe in flight at a time
    out = sup.handle(ProbeResult("db", 1, True), 300)
    assert state(sup, "db") is State.READY
    assert [s.name for s in spawns(out)] == ["web"]


def test_no_probe_means_ready_once_started() -> None:
    sup = Supervisor([svc("a"), svc("b", after=("a",))])
    sup.start(0)
    out = start_one(sup, "a", 1, 5)
    assert state(sup, "a") is State.READY
    assert [s.name for s in spawns(out)] == ["b"]
    start_one(sup, "b", 1, 6)
    assert sup.all_ready


def test_oneshot_success_satisfies_dependants() -> None:
    sup = Supervisor([svc("init", oneshot=True), svc("app", after=("init",))])
    sup.start(0)
    start_one(sup, "init", 1, 1)
    assert state(sup, "init") is State.RUNNING
    assert not sup.all_ready
    out = sup.handle(Exited("init", 1, 0), 50)
    assert state(sup, "init") is State.DONE
    assert [s.name for s in spawns(out)] == ["app"]


def test_oneshot_failure_blocks_dependants_transitively_and_is_reported() -> None:
    sup = Supervisor([
        svc("init", oneshot=True),
        svc("app", after=("init",)),
        svc("ui", after=("app",)),
        svc("other"),
    ])
    sup.start(0)
    start_one(sup, "init", 1, 1)
    out = sup.handle(Exited("init", 1, 3), 2)
    assert state(sup, "init") is State.FAILED
    assert state(sup, "app") is State.BLOCKED and state(sup, "ui") is State.BLOCKED
    assert state(sup, "other") is State.STARTING
    assert spawns(out) == [] and sup.next_deadline() is None  # never retried
    assert sup.dead_ends == ("init", "app", "ui")
    changes = {a.name: a.detail for a in out if isinstance(a, StateChanged)}
    assert changes["init"] == "exited with code 3"
    assert changes["app"] == "dependency init failed"
    assert changes["ui"] == "dependency app blocked"
    status = {s.name: s for s in sup.status()}
    assert status["init"].last_exit == 3


def test_refused_exec_is_terminal_and_blocks() -> None:
    sup = Supervisor([svc("evil"), svc("dep", after=("evil",))])
    sup.start(0)
    out = sup.handle(SpawnFailed("evil", 1, "/bin/sh is outside the verified mounts", True), 1)
    assert state(sup, "evil") is State.REFUSED
    assert state(sup, "dep") is State.BLOCKED
    assert spawns(out) == [] and sup.next_deadline() is None
    assert "outside the verified mounts" in sup.status()[0].detail


def test_spawn_failure_that_is_not_refusal_is_retried() -> None:
    sup = Supervisor([svc("a", restart_initial_ms=100, restart_max_ms=1000)])
    sup.start(0)
    sup.handle(SpawnFailed("a", 1, "ENOENT", False), 1)
    assert state(sup, "a") is State.BACKOFF and sup.next_deadline() == 101


def test_crash_loop_backs_off_exponentially_to_the_cap() -> None:
    sup = Supervisor([svc("a", restart_initial_ms=100, restart_max_ms=1000)])
    sup.start(0)
    now, delays = 0, []
    for run in range(1, 8):
        start_one(sup, "a", run, now)
        sup.handle(Exited("a", run, 1), now + 10)
        deadline = sup.next_deadline()
        assert deadline is not None
        delays.append(deadline - (now + 10))
        assert sup.tick(deadline - 1) == []
        now = deadline
        assert spawns(sup.tick(now))[0].run == run + 1
    assert delays == [100, 200, 400, 800, 1000, 1000, 1000]
    assert sup.status()[0].restarts == 7


def test_a_long_run_resets_the_backoff() -> None:
    sup = Supervisor([svc("a", restart_initial_ms=100, restart_max_ms=1000)])
    sup.start(0)
    for run, (up, down) in enumerate([(0, 10), (110, 120), (320, 330)], start=1):
        start_one(sup, "a", run, up)
        sup.handle(Exited("a", run, 1), down)
        deadline = sup.next_deadline()
        assert deadline is not None
        sup.tick(deadline)
    assert sup.next_deadline() is None
    start_one(sup, "a", 4, 730)
    sup.handle(Exited("a", 4, 1), 730 + 5000)  # ran 5 s > the 1 s cap
    assert sup.next_deadline() == 730 + 5000 + 100


def test_long_running_exit_zero_is_restarted_too() -> None:
    sup = Supervisor([svc("a")])
    sup.start(0)
    start_one(sup, "a", 1, 0)
    sup.handle(Exited("a", 1, 0), 5)
    assert state(sup, "a") is State.BACKOFF


def test_stale_events_from_an_earlier_run_are_ignored() -> None:
    sup = Supervisor([svc("a", ready=("p",), restart_initial_ms=0, restart_max_ms=0)])
    sup.start(0)
    start_one(sup, "a", 1, 0)
    sup.handle(Exited("a", 1, -9), 1)
    sup.tick(1)
    assert sup.handle(ProbeResult("a", 1, True), 2) == []
    assert sup.handle(Exited("a", 1, 0), 2) == []
    assert state(sup, "a") is State.STARTING


def test_probe_result_after_crash_does_not_make_ready() -> None:
    sup = Supervisor([svc("a", ready=("p",))])
    sup.start(0)
    start_one(sup, "a", 1, 0)
    sup.handle(Exited("a", 1, 1), 1)
    sup.handle(ProbeResult("a", 1, True), 2)
    assert state(sup, "a") is State.BACKOFF


def test_stop_goes_dependants_first_and_kills_after_timeout() -> None:
    sup = Supervisor([
        svc("db", stop_timeout_ms=1000),
        svc("web", after=("db",), stop_signal="SIGINT", stop_timeout_ms=500),
    ])
    sup.start(0)
    start_one(sup, "db", 1, 0, pid=1)
    start_one(sup, "web", 1, 0, pid=2)
    out = sup.stop(100)
    assert [a for a in out if isinstance(a, Signal)] == [Signal("web", 1, "SIGINT")]
    assert state(sup, "db") is State.READY
    assert sup.next_deadline() == 600
    out = sup.tick(600)
    assert [a for a in out if isinstance(a, Signal)] == [Signal("web", 1, "SIGKILL")]
    assert sup.next_deadline() is None
    out = sup.handle(Exited("web", 1, -9), 610)
    assert state(sup, "web") is State.STOPPED
    assert [a for a in out if isinstance(a, Signal)] == [Signal("db", 1, "SIGTERM")]
    out = sup.handle(Exited("db", 1, 0), 620)
    assert sup.all_stopped
    assert sup.status()[1].detail == "killed by SIGKILL"


def test_stop_with_nothing_running_is_immediate_and_idempotent() -> None:
    sup = Supervisor([svc("a", oneshot=True), svc("b", after=("a",)), svc("c")])
    sup.start(0)
    sup.handle(Exited("a", 1, 1), 1)  # a failed: b blocked
    sup.handle(SpawnFailed("c", 1, "no", False), 1)  # c in backoff
    sup.stop(2)
    assert sup.all_stopped
    assert state(sup, "a") is State.FAILED and state(sup, "c") is State.STOPPED
    assert sup.stop(3) == []


def test_no_restart_and_no_new_start_while_stopping() -> None:
    sup = Supervisor([svc("a"), svc("b", after=("a",), ready=("p",))])
    sup.start(0)
    start_one(sup, "a", 1, 0)
    start_one(sup, "b", 1, 0)
    sup.stop(10)  # signals b only
    out = sup.handle(Exited("a", 1, 1), 11)  # a crashes meanwhile
    assert spawns(out) == [] and state(sup, "a") is State.STOPPED
    sup.handle(Exited("b", 1, 0), 12)
    assert sup.all_stopped


def test_a_backoff_left_waiting_for_its_dependant_to_stop_is_not_restarted() -> None:
    # Found by test_machine_random: a crashed service whose dependant was still
    # stopping kept its restart deadline, and the next tick spawned it after stop().
    sup = Supervisor([svc("a", restart_initial_ms=0), svc("b", after=("a",))])
    sup.start(0)
    start_one(sup, "a", 1, 0)
    start_one(sup, "b", 1, 0)
    sup.handle(Exited("a", 1, 1), 1)  # a backs off, b still runs
    sup.stop(2)  # signals b; a waits for b to be gone
    assert spawns(sup.tick(3)) == [] and state(sup, "a") is State.BACKOFF
    sup.handle(Exited("b", 1, -15), 4)
    assert state(sup, "a") is State.STOPPED and sup.all_stopped


def test_stop_racing_a_spawn_resends_the_signal() -> None:
    sup = Supervisor([svc("a")])
    sup.start(0)
    out = sup.stop(1)
    assert Signal("a", 1, "SIGTERM") in out
    out = sup.handle(Spawned("a", 1, 55), 2)
    assert out == [Signal("a", 1, "SIGTERM")]


def test_usage_errors() -> None:
    with pytest.raises(SupervisorUsageError):
        Supervisor([svc("a"), svc("a")])
    with pytest.raises(SupervisorUsageError):
        Supervisor([svc("a", after=("zz",))])
    sup = Supervisor([svc("a")])
    sup.start(10)
    with pytest.raises(SupervisorUsageError, match="backwards"):
        sup.tick(5)
    with pytest.raises(SupervisorUsageError, match="no service"):
        sup.handle(Exited("zz", 1, 0), 20)
    with pytest.raises(SupervisorUsageError):
        sup.start(30)
    with pytest.raises(SupervisorUsageError):
        restart_delay_ms(svc("a"), 0)


def test_describe_exit() -> None:
    assert describe_exit(0) == "exited with code 0"
    assert describe_exit(-15) == "killed by SIGTERM"
    assert describe_exit(-200) == "killed by signal 200"


async def test_crash_loop_timeline_under_the_mock_clock(autojump_clock: trio.abc.Clock) -> None:
    """A loop shaped like the runner's: sleep to the next deadline, tick, fake a crash.

    The "process" crashes 50 ms after each start; restarts must come at
    growing intervals, capped, on trio's clock.
    """
    sup = Supervisor([svc("a", restart_initial_ms=200, restart_max_ms=1600)])
    t0 = trio.current_time()

    def now() -> int:
        return round((trio.current_time() - t0) * 1000)

    starts: list[int] = []
    pending = sup.start(now())
    while len(starts) < 7:
        for action in pending:
            if isinstance(action, Spawn):
                starts.append(now())
                sup.handle(Spawned("a", action.run, 1), now())
                await trio.sleep(0.05)
                sup.handle(Exited("a", action.run, 1), now())
        deadline = sup.next_deadline()
        assert deadline is not None
        await trio.sleep_until(t0 + deadline / 1000)
        pending = sup.tick(now())
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert gaps == [250, 450, 850, 1650, 1650, 1650]


def test_a_restart_waits_for_a_dependency_that_is_itself_restarting() -> None:
    # Found by test_machine_random: db and web both crash; web's restart came
    # due while db was still coming back, and web was spawned before db was up.
    sup = Supervisor([svc("db", restart_initial_ms=100, restart_max_ms=1000),
                      svc("web", after=("db",), restart_initial_ms=10, restart_max_ms=1000)])
    assert [s.name for s in spawns(sup.start(0))] == ["db"]
    assert [s.name for s in spawns(start_one(sup, "db", 1, 1))] == ["web"]
    sup.handle(Spawned("web", 1, 101), 2)
    sup.handle(Exited("db", 1, 1), 3)  # db: backoff 100 ms
    sup.handle(Exited("web", 1, 1), 4)  # web: backoff 10 ms, due first
    assert spawns(sup.tick(14)) == []
    assert state(sup, "web") is State.WAITING and "db" in sup.status()[1].detail
    assert [s.name for s in spawns(sup.tick(103))] == ["db"]
    assert [s.name for s in spawns(sup.handle(Spawned("db", 2, 102), 104))] == ["web"]
