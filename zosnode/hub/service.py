"""Running a hub: storage + app + HTTP server as one trio service."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import trio

from zosnode.http.server import HttpServer, Limits, open_listeners
from zosnode.hub.app import HubApp
from zosnode.hub.registry import Registry, RegistryError
from zosnode.hub.registry_db import SqliteRegistry
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
    registry: Registry | None = None,
    prune_every_s: float = 3600.0,
    limits: Limits | None = None,
    log: Callable[[str], None] = lambda _m: None,
    task_status: trio.TaskStatus[RunningHub] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve a hub until its server is shut down (`RunningHub.server.shutdown()`)."""
    await storage.prepare()
    # Without a registry given, an in-memory one (what tests and a throwaway
    # hub want); `hub serve` passes a file in the data directory or a server.
    registry = registry or Registry(SqliteRegistry(":memory:"))
    schema = await registry.migrate()
    app = HubApp(storage, publishers=publishers, registry=registry)
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
    log(f"registry: {registry.backend.describe()} (schema v{schema})")
    log(f"trust: {'root v' + str(root) if root else 'no root yet (publish roots/1.root)'}; "
        f"{len(app.publishers)} publisher key(s)")
    shown = (f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in addresses)
    log(f"listening on {', '.join(shown)}")
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_prune, registry, app, prune_every_s, log)

            async def serve(task_status: trio.TaskStatus[None]) -> None:
                await server.serve(listeners, task_status=task_status)
                nursery.cancel_scope.cancel()  # the server is done: so is pruning

            await nursery.start(serve)
            task_status.started(hub)
    finally:
        app.web.close()
        await storage.aclose()
        with trio.CancelScope(shield=True):
            await registry.aclose()
    log("stopped")


async def _prune(registry: Registry, app: HubApp, every_s: float,
                 log: Callable[[str], None]) -> None:
    """Drop history older than the registry keeps, now and then every `every_s`."""
    while True:
        try:
            gone = await registry.prune(app.now())
            if gone:
                log(f"registry: pruned {gone} history entries")
        except RegistryError as exc:
            log(f"registry: prune failed: {exc}")
        await trio.sleep(every_s)
