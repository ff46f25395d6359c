"""The trio shell around `Supervisor`: processes, output, probes (docs/node-run.md). If it
is cancelled, it kills every process it started before it returns: no orphan outlives it."""

import contextlib
import math
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import trio

from zosnode.agent.services import events
from zosnode.agent.services.allowlist import resolve_exec
from zosnode.agent.services.errors import ExecRefused, SupervisorUsageError
from zosnode.agent.services.machine import ServiceStatus, Supervisor
from zosnode.agent.services.ring import OutputLines
from zosnode.agent.spare import Child
from zosnode.trust.manifest import ServiceSpec

LineSink = Callable[[str, str], None]  # (service, line)
ChangeSink = Callable[[events.StateChanged], None]

PROBE_TIMEOUT_S = 5.0
DRAIN_GRACE_S = 1.0


class ServiceRunner:
    def __init__(self, specs: Sequence[ServiceSpec], *, mounts: Mapping[str, Path],
                 on_line: LineSink, on_change: ChangeSink, probe_interval_ms: int = 250) -> None:
        missing = sorted({s.flist for s in specs} - set(mounts))
        if missing:
            raise SupervisorUsageError(f"flists not mounted: {', '.join(missing)}")
        self._specs = {s.name: s for s in specs}
        self._mounts = dict(mounts)
        self._sup = Supervisor(specs, probe_interval_ms=probe_interval_ms)
        self._on_line, self._on_change = on_line, on_change
        self._procs: dict[tuple[str, int], subprocess.Popen[bytes]] = {}
        # Events for the machine; None asks it to stop.
        self._send, self._recv = trio.open_memory_channel[events.Event | None](256)
        self._changed = trio.Event()
        self._t0 = 0.0
        self._done = trio.Event()


    def status(self) -> tuple[ServiceStatus, ...]:
        return self._sup.status()

    @property
    def dead_ends(self) -> tuple[str, ...]:
        return self._sup.dead_ends

    async def wait_settled(self) -> bool:
        while not (self._sup.dead_ends or self._sup.all_ready):
            await self._changed.wait()
        return not self._sup.dead_ends


    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the services; return once `stop()` has stopped them all."""
        self._t0 = trio.current_time()
        try:
            async with trio.open_nursery() as nursery:
                self._apply(nursery, self._sup.start(self._now()))
                task_status.started()
                while not self._sup.all_stopped:
                    deadline = self._sup.next_deadline()
                    at = math.inf if deadline is None else self._t0 + deadline / 1000
                    with trio.move_on_at(at) as waiting:
                        item = await self._recv.receive()
                    if waiting.cancelled_caught:
                        actions = self._sup.tick(max(self._now(), deadline or 0))
                    elif item is None:
                        actions = self._sup.stop(self._now())
                    else:
                        actions = self._sup.handle(item, self._now())
                    self._apply(nursery, actions)
        finally:
            for popen in list(self._procs.values()):
                _killpg(popen, signal.SIGKILL)
                popen.wait()
            self._done.set()

    async def stop(self) -> None:
        await self._send.send(None)
        await self._done.wait()


    def _now(self) -> int:
        return round((trio.current_time() - self._t0) * 1000)

    def _apply(self, nursery: trio.Nursery, actions: list[events.Action]) -> None:
        queue = list(actions)
        while queue:
            action = queue.pop(0)
            if isinstance(action, events.Spawn):
                queue += self._spawn(nursery, action)
            elif isinstance(action, events.Probe):
                nursery.start_soon(self._probe, action)
            elif isinstance(action, events.Signal):
                if (popen := self._procs.get((action.name, action.run))) is not None:
                    _killpg(popen, signal.Signals[action.signal])
            elif isinstance(action, events.StateChanged):
                self._changed.set()
                self._changed = trio.Event()
                self._on_change(action)

    def _exec(self, name: str, argv: Sequence[str], env: dict[str, str],
              output: int) -> subprocess.Popen[bytes]:
        """Start `argv` of service `name` from its flist's mount; ExecRefused or OSError."""
        home = self._mounts[self._specs[name].flist]
        resolved = resolve_exec(argv, home=home, mounts=list(self._mounts.values()))
        # Popen, not trio's open_process: synchronous, so the machine learns the pid in the step.
        return subprocess.Popen(resolved, env=env, cwd=home, stdin=subprocess.DEVNULL,
                                stdout=output, stderr=subprocess.STDOUT, start_new_session=True)

    def _spawn(self, nursery: trio.Nursery, action: events.Spawn) -> list[events.Action]:
        name, run, now = action.name, action.run, self._now()
        try:
            popen = self._exec(name, action.argv, dict(action.env), subprocess.PIPE)
        except ExecRefused as exc:
            return self._sup.handle(events.SpawnFailed(name, run, str(exc), True), now)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            return self._sup.handle(events.SpawnFailed(name, run, reason, False), now)
        nursery.start_soon(self._watch, name, run, popen)
        return self._sup.handle(events.Spawned(name, run, popen.pid), now)

    async def _watch(self, name: str, run: int, popen: subprocess.Popen[bytes]) -> None:
        assert popen.stdout is not None
        stream = trio.lowlevel.FdStream(os.dup(popen.stdout.fileno()))
        popen.stdout.close()
        self._procs[(name, run)] = popen
        try:
            async with trio.open_nursery() as inner:
                inner.start_soon(self._pump, name, stream)
                code = await wait_exit(popen)
                # Output may trail the exit (children holding the pipe), for a while.
                inner.cancel_scope.deadline = trio.current_time() + DRAIN_GRACE_S
        finally:
            await stream.aclose()
            self._procs.pop((name, run), None)
        await self._send.send(events.Exited(name, run, code))

    async def _pump(self, name: str, stream: trio.lowlevel.FdStream) -> None:
        lines = OutputLines()
        try:
            while chunk := await stream.receive_some(65536):
                for line in lines.feed(chunk):
                    self._on_line(name, line)
        finally:
            for line in lines.close():
                self._on_line(name, line)

    async def _probe(self, action: events.Probe) -> None:
        ok = False
        try:
            popen = self._exec(action.name, action.argv, dict(self._specs[action.name].env),
                               subprocess.DEVNULL)
        except ExecRefused as exc:
            self._on_line(action.name, f"readiness probe refused: {exc}")
        except OSError as exc:
            self._on_line(action.name, f"readiness probe failed to start: {exc.strerror}")
        else:
            try:
                with trio.move_on_after(PROBE_TIMEOUT_S):
                    ok = await wait_exit(popen) == 0
            finally:
                _killpg(popen, signal.SIGKILL)
                popen.wait()
        await self._send.send(events.ProbeResult(action.name, action.run, ok))


def _killpg(popen: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Signal the session of a child that has not been reaped (its pid is still its own)."""
    if popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, sig)


async def wait_exit(popen: Child) -> int:
    """Wait for the child without blocking trio: pidfd where the kernel has it, so we reap it
    within PID 1's reaper's grace period."""
    try:
        fd = os.pidfd_open(popen.pid)
    except (AttributeError, OSError):  # no pidfd, or the child was already reaped by a poll()
        while popen.poll() is None:
            await trio.sleep(0.05)
    else:
        try:
            await trio.lowlevel.wait_readable(fd)
        finally:
            os.close(fd)
    return popen.wait()
