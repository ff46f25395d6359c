"""The fleet as the pages show it: a state per node, filters, counts, pages. Pure.

Input is the registry's `FleetRow`s (the columns of each node's latest
heartbeat a filter or count needs, no heartbeat decoded) and the channels'
current manifests; `now` is passed in. Only the nodes on the page shown are
read whole (`NodeRecord`). The fields issue-by-issue added to the heartbeat
(identity source, hardware, refusals) are read from its dict form,
defensively: a node that does not send them shows nothing for them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zosnode.agent.upgrade import in_rollout, rollout_paused
from zosnode.hub.registry import FleetRow, NodeRecord
from zosnode.hub.web.errors import PageInputError
from zosnode.trust.manifest import Manifest

# The states a node can be shown in, in the order the filter offers them.
STATES = ("ready", "upgrading", "starting", "booting", "failed-release", "failed", "stale")
PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class FleetQuery:
    farm: str = ""
    channel: str = ""
    release: str = ""  # a decimal version, or ""
    state: str = ""
    page: int = 1
    per_page: int = PAGE_SIZE


def parse_query(query: Mapping[str, str]) -> FleetQuery:
    def number(name: str, default: int, hi: int) -> int:
        raw = query.get(name, "")
        if raw == "":
            return default
        if not raw.isdigit() or not 1 <= int(raw) <= hi:
            raise PageInputError(f"{name} must be a number from 1 to {hi}")
        return int(raw)

    state = query.get("state", "")
    if state and state not in STATES:
        raise PageInputError(f"state must be one of {', '.join(STATES)}")
    release = query.get("release", "")
    if release and not (release.isdigit() and len(release) <= 19):
        raise PageInputError("release must be a version number")
    for name in ("farm", "channel"):
        if len(query.get(name, "")) > 256:
            raise PageInputError(f"{name} is longer than any node reports")
    return FleetQuery(farm=query.get("farm", ""), channel=query.get("channel", ""),
                      release=release, state=state, page=number("page", 1, 10_000_000),
                      per_page=number("per_page", PAGE_SIZE, MAX_PAGE_SIZE))


def fleet_state(row: FleetRow, now: int, stale_after_s: int,
                current: Mapping[str, Manifest]) -> str:
    """One word: stale, then the node's own state; `upgrading` when a release in
    its channel's rollout (not paused) is newer than the one it runs."""
    if now - row.received_at > stale_after_s:
        return "stale"
    state = row.state
    if state == "degraded":
        return "failed-release"
    if state == "ready":
        m = current.get(row.channel)
        if (m is not None and m.version > row.release and row.release > 0
                and row.failed_release != m.version and not rollout_paused(m)
                and in_rollout(row.node_id, m)):
            return "upgrading"
    return state


def _opt(d: Mapping[str, Any], name: str) -> Any:
    return d.get(name)


def node_json(rec: NodeRecord, now: int, state: str) -> dict[str, Any]:
    """A node as the fleet JSON gives it: the heartbeat's fields and the hub's view."""
    d = rec.heartbeat.to_dict()
    d.update(received_at=rec.received_at, age_s=max(0, now - rec.received_at),
             state=state, identity_source=_opt(d, "identity_source"))
    return d


@dataclass(frozen=True)
class FleetView:
    total: int  # nodes in the registry
    matched: int  # nodes the filters keep
    page: int
    pages: int
    rows: tuple[tuple[FleetRow, str], ...]  # this page: (row, fleet state)
    by_release: tuple[tuple[str, int, int], ...]  # (channel, release, nodes), of matched
    by_state: tuple[tuple[str, int], ...]
    farms: tuple[str, ...]
    channels: tuple[str, ...]


def select(rows: Sequence[FleetRow], q: FleetQuery, now: int, stale_after_s: int,
           current: Mapping[str, Manifest]) -> FleetView:
    kept: list[tuple[FleetRow, str]] = []
    by_release: Counter[tuple[str, int]] = Counter()
    by_state: Counter[str] = Counter()
    farms: set[str] = set()
    channels: set[str] = set()
    want_release = int(q.release) if q.release else None
    for row in rows:
        farms.add(row.farm)
        channels.add(row.channel)
        if q.farm and row.farm != q.farm or q.channel and row.channel != q.channel:
            continue
        if want_release is not None and row.release != want_release:
            continue
        state = fleet_state(row, now, stale_after_s, current)
        if q.state and state != q.state:
            continue
        kept.append((row, state))
        by_release[(row.channel, row.release)] += 1
        by_state[state] += 1
    pages = max(1, -(-len(kept) // q.per_page))
    page = min(q.page, pages)
    start = (page - 1) * q.per_page
    return FleetView(
        total=len(rows), matched=len(kept), page=page, pages=pages,
        rows=tuple(kept[start:start + q.per_page]),
        by_release=tuple((c, r, n) for (c, r), n in sorted(by_release.items())),
        by_state=tuple((s, by_state[s]) for s in STATES if by_state[s]),
        farms=tuple(sorted(farms)[:500]), channels=tuple(sorted(channels)[:500]))


def page_records(view: FleetView, records: Mapping[str, NodeRecord]
                 ) -> list[tuple[NodeRecord, str]]:
    """The page's rows whole, in order; the state is the one the filter saw. A
    node's record may be a heartbeat newer than its row (read a moment later);
    nodes are never deleted, so none is missing but the code does not rely on it."""
    return [(records[row.node_id], state) for row, state in view.rows
            if row.node_id in records]


def fleet_json(view: FleetView, rows: Sequence[tuple[NodeRecord, str]], q: FleetQuery,
               now: int) -> dict[str, Any]:
    return {
        "total": view.total, "matched": view.matched, "page": view.page,
        "pages": view.pages, "per_page": q.per_page,
        "filters": {"farm": q.farm, "channel": q.channel, "release": q.release,
                    "state": q.state},
        "by_release": [{"channel": c, "release": r, "nodes": n}
                       for c, r, n in view.by_release],
        "by_state": dict(view.by_state),
        "nodes": [node_json(rec, now, state) for rec, state in rows],
    }

