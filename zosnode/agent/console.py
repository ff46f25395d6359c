"""The console status view: pure rendering plus a trio task that redraws on change.

The node has no shell and no login; the console is the only place a farmer
looks. It shows who the node is, where it is on the network, what it runs,
each service's state and the last error, and is redrawn when any of that
changes (at most every `min_interval_s`, so a crash loop cannot flood it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import trio

from zosnode.agent.services.machine import ServiceStatus

Write = Callable[[str], None]


def ready_message(release: int, node_id: str) -> str:
    """What the agent says at ready; the console writer's prefix makes it the line
    tests and farmers wait for: `zosnode: ready <release> <node-id>`."""
    return f"ready {release} {node_id}"


@dataclass(frozen=True)
class NodeStatus:
    node_id: str = ""
    farm: str = ""
    channel: str = ""
    phase: str = "starting"
    addresses: tuple[str, ...] = ()
    release: int | None = None
    services: tuple[ServiceStatus, ...] = ()
    last_error: str | None = None


def render(status: NodeStatus) -> str:
    release = "none" if status.release is None else str(status.release)
    lines = [
        "---- zosnode status ----",
        f"node     {status.node_id or '-'}",
        f"farm     {status.farm or '-'}   channel {status.channel or '-'}",
        f"phase    {status.phase}",
        f"network  {', '.join(status.addresses) or '-'}",
        f"release  {release}",
    ]
    for s in status.services:
        extra = f" restarts={s.restarts}" if s.restarts else ""
        detail = f" ({s.detail})" if s.detail else ""
        lines.append(f"  {s.name:<20} {s.state.value:<9}{extra}{detail}")
    lines.append(f"error    {status.last_error or '-'}")
    return "\n".join(lines)


class StatusBoard:
    """The current `NodeStatus`; every update wakes the console task."""

    def __init__(self, status: NodeStatus | None = None) -> None:
        self._status = status or NodeStatus()
        self._changed = trio.Event()

    @property
    def status(self) -> NodeStatus:
        return self._status

    def update(self, **changes: Any) -> None:
        new = replace(self._status, **changes)
        if new != self._status:
            self._status = new
            self._changed.set()
            self._changed = trio.Event()

    async def wait_changed(self) -> None:
        await self._changed.wait()


async def console_task(
    board: StatusBoard,
    write: Write,
    *,
    min_interval_s: float = 0.5,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Draw the board now and after each change, never more often than the interval."""
    shown = ""
    task_status.started()
    while True:
        text = render(board.status)
        if text != shown:
            write(text)
            shown = text
        await trio.sleep(min_interval_s)
        if render(board.status) == shown:
            await board.wait_changed()
