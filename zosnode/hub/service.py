"""Running a hub: storage + app + HTTP server as one trio service."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import trio

from zosnode.http.server import HttpServer, Limits, open_listeners
from zosnode.hub.app import HubApp
from zosnode.hub.storage import Storage


@dataclass(frozen=True)
class RunningHub:
    app: HubApp
    server: HttpServer
    addresses: tuple[tuple[str, int], ...]

    @property
    def url(self) -> str:
        host, port = self.addresses[0]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"


async def run_hub(
    storage: Storage,
    listen: str,
    *,
    publishers: Collection[str] = (),
    limits: Limits | None = None,
    log: Callable[[str], None] = lambda _m: None,
    task_status: trio.TaskStatus[RunningHub] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve a hub until its server is shut down (`RunningHub.server.shutdown()`)."""
    await storage.prepare()
    app = HubApp(storage, publishers=publishers)
    await app.start()
    root = app.publisher.verifier.root.version if app.publisher.verifier else None
    listeners = await open_listeners(listen)
    server = HttpServer(app.handle, limits, observe=app.observe, log=log,
                        body_limit=app.body_limit, on_failure=app.metrics.connection_failed)
    app.open_connections = lambda: server.open_connections
    addresses = tuple(
        (str(sockname[0]), int(sockname[1]))
        for sockname in (lst.socket.getsockname() for lst in listeners)
    )
    hub = RunningHub(app, server, addresses)
    log(f"storage: {storage.describe()}")
    log(f"trust: {'root v' + str(root) if root else 'no root yet (publish roots/1.root)'}; "
        f"{len(app.publishers)} publisher key(s)")
    shown = (f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in addresses)
    log(f"listening on {', '.join(shown)}")
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, listeners)
            task_status.started(hub)
    finally:
        await storage.aclose()
    log("stopped")
