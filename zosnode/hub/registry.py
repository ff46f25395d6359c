"""The node registry: the latest heartbeat of every node and a bounded history.

One small interface (`RegistryBackend`, synchronous, run in worker threads)
with two backends in `zosnode.hub.registry_db`: SQLite (embedded, the
default, a file in the hub's data directory) and PostgreSQL (several hub
replicas sharing one fleet). `Registry` is the trio-side front: every call
goes to a thread under a bounded limiter, so a slow or absent database never
blocks the event loop; when the database is unreachable a call raises
`RegistryUnavailable` and the heartbeat route answers 503.

A heartbeat not newer than the one kept (by the node's own `sent_at`) is
refused, atomically in the database (an upsert guarded by `sent_at`), so a
captured heartbeat cannot be replayed to roll a node's reported state back,
whichever replica receives it. The pure parts (a node's state, the history
events a heartbeat implies) are here; SQL is in `registry_db`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar

import trio

from zosnode.errors import UsageError, ZosError
from zosnode.wire.heartbeat import Heartbeat
from zosnode.wire.heartbeat_verify import from_dict

T = TypeVar("T")

DEFAULT_STALE_AFTER_S = 600
DEFAULT_HISTORY_DAYS = 30
DEFAULT_MAX_NODES = 200_000
PUBLISH_LOCK_TIMEOUT_S = 30.0


class RegistryError(ZosError):
    """The registry database failed."""


class RegistryUnavailable(RegistryError):
    """The database cannot be reached or refused the operation (retry later)."""


class RegistryUsageError(RegistryError, UsageError):
    """A registry URL we cannot use (unknown scheme, missing driver)."""


class PublishLockBusy(RegistryError):
    """Another publication held the publish lock for longer than we wait."""


@dataclass(frozen=True)
class NodeRecord:
    heartbeat: Heartbeat
    received_at: int

    @property
    def state(self) -> str:
        return node_state(self.heartbeat)


class FleetRow(NamedTuple):
    """What the fleet pages filter and count a node by: columns the hub wrote at
    ingest from a heartbeat it had verified, read without decoding the heartbeat
    (10,000 of them cost ~0.3 s to decode; these ~20 ms to read). A tuple, not
    a validated dataclass: one per node per fleet page."""

    node_id: str
    farm: str
    channel: str
    release: int
    state: str  # node_state() of the heartbeat
    failed_release: int | None
    received_at: int


def fleet_row(rec: NodeRecord) -> FleetRow:
    hb = rec.heartbeat
    return FleetRow(hb.node_id, hb.farm, hb.channel, hb.release, node_state(hb),
                    hb.failed_release, rec.received_at)


@dataclass(frozen=True)
class Event:
    """One history entry: what changed on a node, when the hub heard it."""

    node_id: str
    at: int
    kind: str  # "release", "failure" or "state"
    detail: str


@dataclass(frozen=True)
class Summary:
    """What /metrics exports from the registry."""

    count: int
    by_release: Counter[tuple[str, int]]
    by_state: Counter[str]
    stale: int


def node_state(hb: Heartbeat) -> str:
    """One word for a node: booting, failed, degraded, starting or ready."""
    if hb.release == 0:
        return "booting"
    states = {s.state for s in hb.services}
    if "failed" in states:
        return "failed"
    if hb.failed_release is not None and hb.failed_release > hb.release:
        return "degraded"
    # A node's supervisor reports "ready" (long-running, probe passed) and
    # "done" (one-shot exited 0) when up; "running" is counted up too (a
    # service without a probe, as older agents reported it).
    if states - {"running", "ready", "done"}:
        return "starting"
    return "ready"


def events_for(old: Heartbeat | None, new: Heartbeat, now: int) -> list[Event]:
    """The history entries `new` adds after `old` (None: a node first heard of)."""
    out: list[Event] = []
    nid = new.node_id
    if old is None or old.release != new.release or old.channel != new.channel:
        out.append(Event(nid, now, "release", f"{new.channel} {new.release}"))
    if new.failed_release is not None and (old is None
                                           or old.failed_release != new.failed_release):
        out.append(Event(nid, now, "failure", f"{new.channel} {new.failed_release}"))
    state = node_state(new)
    if old is None or node_state(old) != state:
        out.append(Event(nid, now, "state", state))
    return out


def heartbeat_view(hb: Heartbeat) -> dict[str, Any]:
    """The heartbeat for people and tools: every field, the optional ones at their
    defaults too (the signed form leaves those out), and the cache's hit rate."""
    d: dict[str, Any] = {"secure_boot": hb.secure_boot, "identity_source": hb.identity_source,
                         "hardware": None, "cache": None, "refusals": [], **hb.to_dict()}
    if d["cache"] is not None:
        looked = hb.cache.hits + hb.cache.misses if hb.cache else 0
        d["cache"]["hit_rate"] = round(hb.cache.hits / looked, 3) if hb.cache and looked else None
    return d


def heartbeat_json(hb: Heartbeat) -> str:
    return json.dumps(hb.to_dict(), sort_keys=True, separators=(",", ":"))


def heartbeat_from_json(text: str) -> Heartbeat:
    return from_dict(json.loads(text))


class RegistryBackend(Protocol):
    """A registry database. Blocking calls; each is one transaction."""

    def describe(self) -> str: ...

    def migrate(self) -> int:
        """Apply the schema migrations not applied yet; return the schema version."""
        ...

    def record(self, hb: Heartbeat, now: int, max_nodes: int) -> str | None:
        """Keep `hb` and its history events, or say why not (stale, full)."""
        ...

    def nodes(self) -> list[NodeRecord]: ...

    def fleet_rows(self) -> list[FleetRow]:
        """Every node's FleetRow, by node id."""
        ...

    def records(self, node_ids: list[str]) -> dict[str, NodeRecord]:
        """The nodes of `node_ids` the registry holds, by node id."""
        ...

    def summary(self, stale_before: int) -> Summary: ...

    def history(self, node_id: str, limit: int) -> list[Event]: ...

    def prune(self, before: int) -> int:
        """Delete history older than `before`; return how many entries went."""
        ...

    def publish_lock(self, timeout_s: float) -> AbstractContextManager[None]:
        """Held around a check-then-write publication, across every replica."""
        ...

    def close(self) -> None: ...


class Registry:
    """The trio side: backend calls in worker threads under one limiter."""

    def __init__(self, backend: RegistryBackend, *, threads: int = 8,
                 max_nodes: int = DEFAULT_MAX_NODES,
                 stale_after_s: int = DEFAULT_STALE_AFTER_S,
                 history_days: int = DEFAULT_HISTORY_DAYS) -> None:
        if threads < 1 or max_nodes < 1 or stale_after_s < 1 or history_days < 1:
            raise RegistryUsageError("registry threads, max nodes, stale time and "
                                     "history days must be at least 1")
        self.backend = backend
        self.max_nodes = max_nodes
        self.stale_after_s = stale_after_s
        self.history_days = history_days
        self._limiter = trio.CapacityLimiter(threads)
        # The publish lock keeps one thread for as long as a publication
        # runs; its own limiter so publishing never starves heartbeats.
        self._lock_limiter = trio.CapacityLimiter(2)
        self._local = trio.Lock()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def migrate(self) -> int:
        return await self._run(self.backend.migrate)

    async def record(self, hb: Heartbeat, now: int) -> str | None:
        return await self._run(self.backend.record, hb, now, self.max_nodes)

    async def nodes(self) -> list[NodeRecord]:
        return await self._run(self.backend.nodes)

    async def fleet_rows(self) -> list[FleetRow]:
        return await self._run(self.backend.fleet_rows)

    async def records(self, node_ids: list[str]) -> dict[str, NodeRecord]:
        return await self._run(self.backend.records, node_ids)

    async def summary(self, now: int) -> Summary:
        return await self._run(self.backend.summary, now - self.stale_after_s)

    async def history(self, node_id: str, limit: int = 200) -> list[Event]:
        return await self._run(self.backend.history, node_id, limit)

    async def prune(self, now: int) -> int:
        return await self._run(self.backend.prune, now - self.history_days * 86400)

    async def to_json_async(self, now: int) -> dict[str, Any]:
        return self.nodes_json(await self.nodes(), now)

    def to_json(self, now: int) -> dict[str, Any]:
        """Blocking form, for tests and tools outside the event loop."""
        return self.nodes_json(self.backend.nodes(), now)

    def nodes_json(self, records: list[NodeRecord], now: int) -> dict[str, Any]:
        return {
            "count": len(records),
            "nodes": [
                {**heartbeat_view(r.heartbeat), "received_at": r.received_at,
                 "age_s": max(0, now - r.received_at), "state": r.state,
                 "stale": now - r.received_at > self.stale_after_s}
                for r in records
            ],
        }

    @asynccontextmanager
    async def publish_lock(self, timeout_s: float = PUBLISH_LOCK_TIMEOUT_S
                           ) -> AsyncIterator[None]:
        """Serialise check-then-write publications here and across replicas."""
        async with self._local:
            cm = self.backend.publish_lock(timeout_s)
            await trio.to_thread.run_sync(cm.__enter__, limiter=self._lock_limiter)
            try:
                yield
            finally:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(cm.__exit__, None, None, None,
                                                  limiter=self._lock_limiter)

    async def aclose(self) -> None:
        await self._run(self.backend.close)

