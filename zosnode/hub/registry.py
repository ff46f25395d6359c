"""The latest heartbeat of every node, kept in memory.

A hub restart forgets nodes until their next heartbeat (one polling interval),
which keeps the hub stateless apart from its data directory. A heartbeat not
newer than the one kept (by the node's own `sent_at`) is refused, so a
captured heartbeat cannot be replayed to roll a node's reported state back.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from zosnode.wire.heartbeat import Heartbeat


@dataclass(frozen=True)
class NodeRecord:
    heartbeat: Heartbeat
    received_at: int


class NodeRegistry:
    def __init__(self, max_nodes: int = 200_000) -> None:
        self.max_nodes = max_nodes
        self._nodes: dict[str, NodeRecord] = {}

    def __len__(self) -> int:
        return len(self._nodes)

    def record(self, hb: Heartbeat, now: int) -> str | None:
        """Keep `hb`; or say why not (stale or registry full)."""
        old = self._nodes.get(hb.node_id)
        if old is not None and hb.sent_at <= old.heartbeat.sent_at:
            return "not newer than the heartbeat already kept"
        if old is None and len(self._nodes) >= self.max_nodes:
            return "node registry is full"
        self._nodes[hb.node_id] = NodeRecord(hb, now)
        return None

    def nodes(self) -> list[NodeRecord]:
        return [self._nodes[k] for k in sorted(self._nodes)]

    def by_release(self) -> Counter[tuple[str, int]]:
        return Counter((r.heartbeat.channel, r.heartbeat.release) for r in self._nodes.values())

    def to_json(self, now: int) -> dict[str, Any]:
        return {
            "count": len(self._nodes),
            "nodes": [
                {**r.heartbeat.to_dict(), "received_at": r.received_at,
                 "age_s": max(0, now - r.received_at)}
                for r in self.nodes()
            ],
        }
