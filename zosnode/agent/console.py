"""The console status view (the only place a farmer looks), redrawn on change but at most every
`min_interval_s` (a crash loop cannot flood it)."""

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import trio

from zosnode.agent.services.machine import ServiceStatus


def ready_message(release: int, node_id: str) -> str:
    """With the console's prefix, the line tests and farmers wait for: `zosnode: ready R ID`."""
    return f"ready {release} {node_id}"


def _ago(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s} s ago" if s < 120 else f"{s // 60} min ago" if s < 7200 else f"{s // 3600} h ago"


@dataclass(frozen=True)
class NodeStatus:
    node_id: str = ""
    identity: str = ""  # where its key came from: tpm, disk, ram
    cache: str = ""  # where the block cache lives, e.g. "disk vda, up to 49 MiB"
    farm: str = ""
    channel: str = ""
    phase: str = "starting"
    addresses: tuple[str, ...] = ()
    release: int | None = None
    services: tuple[ServiceStatus, ...] = ()
    error: str | None = None  # what is wrong now
    error_at: float = 0.0
    last_error: str | None = None  # the last one since resolved
    last_error_at: float = 0.0


def render(status: NodeStatus, now: float) -> str:
    """The status screen; `now`, on the errors' clock, gives their ages."""
    identity = f" ({status.identity})" if status.identity else ""
    lines = ["---- zosnode status ----",
             f"node     {status.node_id or '-'}{identity}",
             f"farm     {status.farm or '-'}   channel {status.channel or '-'}",
             f"phase    {status.phase}",
             f"network  {', '.join(status.addresses) or '-'}",
             f"cache    {status.cache or '-'}",
             f"release  {'none' if status.release is None else status.release}"]
    for s in status.services:
        extra = f" restarts={s.restarts}" if s.restarts else ""
        detail = f" ({s.detail})" if s.detail else ""
        lines.append(f"  {s.name:<20} {s.state.value:<9}{extra}{detail}")
    def aged(text: str | None, at: float) -> str:
        return "-" if text is None else f"{text} ({_ago(now - at)})"

    lines.append(f"error    {aged(status.error, status.error_at)}")
    if status.last_error is not None:
        lines.append(f"last     {aged(status.last_error, status.last_error_at)}")
    return "\n".join(lines)


class StatusBoard:
    def __init__(self, status: NodeStatus | None = None) -> None:
        self.status = status or NodeStatus()
        self.changed = trio.Event()

    def update(self, **changes: Any) -> None:
        new = replace(self.status, **changes)
        if new != self.status:
            self.status = new
            self.changed.set()
            self.changed = trio.Event()

    def fail(self, text: str, now: float) -> None:
        """`text` is what is wrong now (the same error again keeps its first time)."""
        st = self.status
        self.update(error=text, error_at=st.error_at if st.error == text else now)

    def resolve(self) -> None:
        """Whatever was wrong is no more: it becomes the last error, keeping its time."""
        st = self.status
        if st.error is not None:
            self.update(error=None, last_error=st.error, last_error_at=st.error_at)


async def console_task(board: StatusBoard, write: Callable[[str], None], *,
                       min_interval_s: float = 0.5,
                       task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    while True:
        shown = board.status
        write(render(shown, trio.current_time()))
        await trio.sleep(min_interval_s)
        if board.status == shown:
            await board.changed.wait()
