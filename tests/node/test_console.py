"""The console status view: what it shows, and that it redraws on change only."""

from __future__ import annotations

from pathlib import Path

import trio

from zosnode.agent.console import NodeStatus, StatusBoard, console_task, ready_message, render
from zosnode.agent.phases import BootClock, memory_message, phases_message, process_start
from zosnode.agent.services.events import State
from zosnode.agent.services.machine import ServiceStatus


def test_ready_message() -> None:
    assert ready_message(7, "ab" * 32) == "ready 7 " + "ab" * 32


def test_render_shows_everything_a_farmer_needs() -> None:
    text = render(NodeStatus(
        node_id="cd" * 32, identity="disk", cache="disk vda, up to 49 MiB",
        farm="farm1", channel="stable", phase="ready",
        addresses=("10.0.0.5/24",), release=3,
        services=(ServiceStatus("web", State.BACKOFF, False, None, 2, 1, "exited with code 1"),),
        error="hub http://h1 unreachable",
    ), 0.0)
    for want in ("cd" * 32 + " (disk)", "cache    disk vda, up to 49 MiB", "farm1", "stable",
                 "ready", "10.0.0.5/24", "release  3", "web", "backoff", "restarts=2",
                 "exited with code 1", "hub http://h1"):
        assert want in text


async def test_redraws_on_change_and_not_otherwise(autojump_clock: trio.abc.Clock) -> None:
    board = StatusBoard(NodeStatus(node_id="n1"))
    drawn: list[str] = []
    async with trio.open_nursery() as n:
        await n.start(console_task, board, drawn.append)
        await trio.sleep(10)
        assert len(drawn) == 1
        board.update(phase="ready", release=1)
        board.update(phase="ready")  # no change: no wake-up
        await trio.sleep(1)
        assert len(drawn) == 2 and "release  1" in drawn[1]
        for i in range(100):  # a burst is coalesced by the interval
            board.update(error=f"e{i}")
            await trio.sleep(0.01)
        await trio.sleep(1)
        assert 3 <= len(drawn) <= 6 and "e99" in drawn[-1]
        n.cancel_scope.cancel()


def test_a_resolved_error_moves_to_last_error_with_its_age() -> None:
    board = StatusBoard()
    board.fail("manifest refused: signature does not verify", 100.0)
    board.fail("manifest refused: signature does not verify", 104.0)  # same: keeps its time
    text = render(board.status, 110.0)
    assert "error    manifest refused: signature does not verify (10 s ago)" in text
    assert "last " not in text
    board.resolve()
    text = render(board.status, 130.0)
    assert "error    -" in text
    assert "last     manifest refused: signature does not verify (30 s ago)" in text
    board.resolve()  # nothing wrong: the last error stays
    assert board.status.last_error == "manifest refused: signature does not verify"
    board.fail("heartbeat: no hub", 200.0)
    text = render(board.status, 7400.0)
    assert "error    heartbeat: no hub (2 h ago)" in text and "(2 h ago)" in text
    assert "last     manifest refused" in text


async def test_an_age_alone_does_not_redraw(autojump_clock: trio.abc.Clock) -> None:
    board = StatusBoard(NodeStatus(node_id="n1"))
    drawn: list[str] = []
    async with trio.open_nursery() as n:
        await n.start(console_task, board, drawn.append)
        board.fail("no hub answered", trio.current_time())
        await trio.sleep(60)
        assert len(drawn) == 2 and "no hub answered (0 s ago)" in drawn[1]
        board.resolve()
        await trio.sleep(1)
        assert len(drawn) == 3 and "last     no hub answered (60 s ago)" in drawn[2]
        n.cancel_scope.cancel()


def test_boot_phases_line_gives_each_phases_own_time() -> None:
    ends = {"modules": 400, "network": 2300, "cache": 2350, "manifest": 2900,
            "mounts": 4100, "services": 4900, "ready": 4900}
    assert phases_message(ends) == (
        "boot phases: modules 0.4s network 1.9s cache 0.1s manifest 0.6s mounts 1.2s "
        "services 0.8s ready 0.0s; ready 4.9s after the agent started")
    # A phase that did not happen (no cache disk asked for) is left out.
    assert phases_message({"network": 1000, "ready": 1500}) == (
        "boot phases: network 1.0s ready 0.5s; ready 1.5s after the agent started")


def test_boot_clock_marks_once_from_the_start() -> None:
    now = [10.0]
    clock = BootClock(lambda: now[0], start=9.5)
    clock.mark("modules")
    now[0] = 12.25
    clock.mark("modules")  # an upgrade later is no boot phase
    clock.mark("network")
    assert clock.ends == {"modules": 500, "network": 2750}
    start = process_start()
    assert start is not None and 0 < start <= BootClock().start + 1


def test_agent_memory_line(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tpython3\nVmHWM:\t   41062 kB\nVmRSS:\t   39117 kB\n")
    assert memory_message(status) == "agent memory: 38.2 MiB resident, peak 40.1 MiB"
    status.write_text("Name:\tpython3\n")
    assert memory_message(status) == "agent memory: unknown (KeyError)"
    assert memory_message(tmp_path / "absent").startswith("agent memory: unknown")
    assert memory_message().startswith("agent memory: ")  # this process
