"""The trio runner with real processes; a temp dir plays the verified mount."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import trio

from zosnode.agent.services.errors import SupervisorUsageError
from zosnode.agent.services.events import State, StateChanged
from zosnode.agent.services.runner import ServiceRunner
from zosnode.trust.manifest import ServiceSpec

LIMIT_S = 20  # every test is bounded; none comes near it


def write(mount: Path, name: str, body: str) -> None:
    (mount / name).write_text(textwrap.dedent(body))


def spec(name: str, *argv: str, **kw: object) -> ServiceSpec:
    return ServiceSpec(name=name, flist="demo", argv=argv, **kw)  # type: ignore[arg-type]


class Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self.changes: list[StateChanged] = []
        self._changed = trio.Event()

    def line(self, name: str, text: str) -> None:
        self.lines.append((name, text))

    def change(self, ch: StateChanged) -> None:
        self.changes.append(ch)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_changed(self) -> None:
        await self._changed.wait()

    def output(self, name: str) -> list[str]:
        return [text for who, text in self.lines if who == name]

    def states(self, name: str) -> list[State]:
        return [c.state for c in self.changes if c.name == name]


def runner(mount: Path, specs: list[ServiceSpec], rec: Recorder, **kw: object) -> ServiceRunner:
    return ServiceRunner(
        specs, mounts={"demo": mount}, on_line=rec.line, on_change=rec.change, **kw  # type: ignore[arg-type]
    )


@pytest.fixture
def mount(tmp_path: Path) -> Path:
    m = tmp_path / "mount"
    m.mkdir()
    write(m, "hello.py", """
        import os, sys, time
        print("hello from", os.environ.get("GREETING"), flush=True)
        print("keys", ",".join(sorted(os.environ)), flush=True)
        print("to stderr", file=sys.stderr, flush=True)
        time.sleep(60)
    """)
    write(m, "ready.py", """
        import os, sys
        sys.exit(0 if os.path.exists(os.environ["FLAG"]) else 1)
    """)
    write(m, "touch_later.py", """
        import os, time
        time.sleep(0.3)
        open(os.environ["FLAG"], "w").close()
        time.sleep(60)
    """)
    write(m, "crash.py", """
        import sys
        print("crashing", flush=True)
        sys.exit(3)
    """)
    write(m, "stubborn.py", """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring SIGTERM", flush=True)
        time.sleep(60)
    """)
    return m


async def test_output_is_captured_and_mirrored_and_env_is_exactly_the_manifests(
    mount: Path,
) -> None:
    rec = Recorder()
    r = runner(mount, [spec("hello", "python", "hello.py", env={"GREETING": "node"})], rec)
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as n:
            await n.start(r.run)
            assert await r.wait_settled()
            while len(rec.output("hello")) < 3:
                await trio.sleep(0.02)
            await r.stop()
    out = rec.output("hello")
    assert out[0] == "hello from node"
    # Only the manifest's variable (and what CPython itself sets) reaches the service.
    keys = set(out[1].removeprefix("keys ").split(","))
    assert keys - {"LC_CTYPE"} == {"GREETING"}
    assert "to stderr" in out
    assert ("hello", "hello from node") in rec.lines
    assert r.status()[0].state is State.STOPPED


async def test_readiness_probe_gates_dependants(mount: Path, tmp_path: Path) -> None:
    flag = str(tmp_path / "flag")
    rec = Recorder()
    specs = [
        spec("db", "python", "touch_later.py", env={"FLAG": flag},
             ready=("python", "ready.py")),
        spec("web", "python", "hello.py", after=("db",)),
    ]
    r = runner(mount, specs, rec, probe_interval_ms=50)
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as n:
            await n.start(r.run)
            assert await r.wait_settled()
            await r.stop()
    assert os.path.exists(flag)
    db_ready = next(
        i for i, c in enumerate(rec.changes) if c.name == "db" and c.state is State.READY
    )
    web_start = next(i for i, c in enumerate(rec.changes) if c.name == "web")
    assert rec.changes[web_start].state is State.STARTING and web_start > db_ready
    # Dependants stop first.
    stops = [c.name for c in rec.changes if c.state is State.STOPPED]
    assert stops == ["web", "db"]


async def test_crashing_service_restarts_with_growing_delays(mount: Path) -> None:
    rec = Recorder()
    # A run that lasts restart_max_ms resets the back-off, so the cap stays well above
    # a loaded machine's Python start (200 ms was not: the sequence restarted at 50).
    r = runner(mount, [spec("crash", "python", "crash.py", restart_initial_ms=50,
                            restart_max_ms=800)], rec)
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as n:
            await n.start(r.run)
            while r.status()[0].restarts < 6:
                await rec.wait_changed()
            await r.stop()
    backoffs = [c for c in rec.changes if c.state is State.BACKOFF]
    scheduled = [int(c.detail.split("restart in ")[1].split()[0]) for c in backoffs]
    assert scheduled[:6] == [50, 100, 200, 400, 800, 800]
    assert all(c.detail.startswith("exited with code 3") for c in backoffs)
    # Each restart came no earlier than its scheduled delay.
    starts = [c.at_ms for c in rec.changes if c.state is State.STARTING]
    for backoff, delay, start in zip(backoffs, scheduled, starts[1:], strict=False):
        assert start - backoff.at_ms >= delay
    assert rec.output("crash").count("crashing") >= 5


async def test_failed_oneshot_blocks_dependants_and_is_reported(mount: Path) -> None:
    rec = Recorder()
    specs = [
        spec("setup", "python", "crash.py", oneshot=True),
        spec("app", "python", "hello.py", after=("setup",)),
    ]
    r = runner(mount, specs, rec)
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as n:
            await n.start(r.run)
            assert not await r.wait_settled()
            await r.stop()
    st = {s.name: s for s in r.status()}
    assert st["setup"].state is State.FAILED and st["setup"].last_exit == 3
    assert st["app"].state is State.BLOCKED and st["app"].detail == "dependency setup failed"
    assert State.STARTING not in rec.states("app")  # never ran


async def test_argv_outside_the_verified_mounts_is_refused(mount: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (mount / "sh").symlink_to("/bin/sh")
    rec = Recorder()
    specs = [
        spec("abs", "/bin/sh", "-c", f"touch {marker}"),
        spec("link", "sh", "-c", f"touch {marker}"),
        spec("pyc", "python", "-c", f"open({str(marker)!r}, 'w')"),
        spec("ok", "python", "hello.py"),
    ]
    r = runner(mount, specs, rec)
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as n:
            await n.start(r.run)
            assert not await r.wait_settled()
            await r.stop()
    st = {s.name: s for s in r.status()}
    for name in ("abs", "link", "pyc"):
        assert st[name].state is State.REFUSED
        assert st[name].detail.startswith("exec refused")
        assert st[name].restarts == 0
    assert "/bin" in st["link"].detail and "outside the verified mounts" in st["link"].detail
    assert st["ok"].state is State.STOPPED
    assert not marker.exists()


async def test_stop_kills_a_service_that_ignores_its_stop_signal(mount: Path) -> None:
    rec = Recorder()
    r = runner(mount, [spec("stubborn", "python", "stubborn.py", stop_timeout_ms=300)], rec)
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as n:
            await n.start(r.run)
            while "ignoring SIGTERM" not in rec.output("stubborn"):
                await trio.sleep(0.02)
            pid = r.status()[0].pid
            assert pid is not None
            await r.stop()
    assert r.status()[0].last_exit == -9
    assert [c.detail for c in rec.changes if c.state is State.STOPPING][-1].endswith("SIGKILL")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_cancelling_the_runner_kills_its_processes(mount: Path) -> None:
    rec = Recorder()
    r = runner(mount, [spec("hello", "python", "hello.py")], rec)
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as n:
            await n.start(r.run)
            await r.wait_settled()
            pid = r.status()[0].pid
            n.cancel_scope.cancel()
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_unmounted_flist_is_a_usage_error(mount: Path) -> None:
    s = ServiceSpec(name="x", flist="other", argv=("python", "hello.py"))
    with pytest.raises(SupervisorUsageError, match="not mounted: other"):
        ServiceRunner([s], mounts={"demo": mount}, on_line=print, on_change=print)
