"""The console status view: what it shows, and that it redraws on change only."""

from __future__ import annotations

import trio

from zosnode.agent.console import NodeStatus, StatusBoard, console_task, ready_message, render
from zosnode.agent.services.events import State
from zosnode.agent.services.machine import ServiceStatus


def test_ready_message() -> None:
    assert ready_message(7, "ab" * 32) == "ready 7 " + "ab" * 32


def test_render_shows_everything_a_farmer_needs() -> None:
    text = render(NodeStatus(
        node_id="cd" * 32, farm="farm1", channel="stable", phase="ready",
        addresses=("10.0.0.5/24",), release=3,
        services=(ServiceStatus("web", State.BACKOFF, False, None, 2, 1, "exited with code 1"),),
        last_error="hub http://h1 unreachable",
    ))
    for want in ("cd" * 32, "farm1", "stable", "ready", "10.0.0.5/24", "release  3",
                 "web", "backoff", "restarts=2", "exited with code 1", "hub http://h1"):
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
            board.update(last_error=f"e{i}")
            await trio.sleep(0.01)
        await trio.sleep(1)
        assert 3 <= len(drawn) <= 6 and "e99" in drawn[-1]
        n.cancel_scope.cancel()
