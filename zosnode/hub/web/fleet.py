"""The fleet as the pages show it: a state per node, filters, counts, pages. Pure.

Input is the registry's records (the latest heartbeat of each node, when it
was received) and the channels' current manifests; `now` is passed in. The
fields issue-by-issue added to the heartbeat (identity source, hardware,
refusals) are read from its dict form, defensively: a node that does not
send them shows nothing for them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zosnode.agent.upgrade import in_rollout, rollout_paused
from zosnode.hub.registry import NodeRecord, node_state
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


def fleet_state(rec: NodeRecord, now: int, stale_after_s: int,
                current: Mapping[str, Manifest]) -> str:
    """One word: stale, then the node's own state; `upgrading` when a release in
    its channel's rollout (not paused) is newer than the one it runs."""
    if now - rec.received_at > stale_after_s:
        return "stale"
    hb = rec.heartbeat
    state = node_state(hb)
    if state == "degraded":
        return "failed-release"
    if state == "ready":
        m = current.get(hb.channel)
        if (m is not None and m.version > hb.release and hb.release > 0
                and hb.failed_release != m.version and not rollout_paused(m)
                and in_rollout(hb.node_id, m)):
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
    rows: tuple[tuple[NodeRecord, str], ...]  # this page: (record, fleet state)
    by_release: tuple[tuple[str, int, int], ...]  # (channel, release, nodes), of matched
    by_state: tuple[tuple[str, int], ...]
    farms: tuple[str, ...]
    channels: tuple[str, ...]


def select(records: Sequence[NodeRecord], q: FleetQuery, now: int, stale_after_s: int,
           current: Mapping[str, Manifest]) -> FleetView:
    kept: list[tuple[NodeRecord, str]] = []
    by_release: Counter[tuple[str, int]] = Counter()
    by_state: Counter[str] = Counter()
    farms: set[str] = set()
    channels: set[str] = set()
    want_release = int(q.release) if q.release else None
    for rec in records:
        hb = rec.heartbeat
        farms.add(hb.farm)
        channels.add(hb.channel)
        if q.farm and hb.farm != q.farm or q.channel and hb.channel != q.channel:
            continue
        if want_release is not None and hb.release != want_release:
            continue
        state = fleet_state(rec, now, stale_after_s, current)
        if q.state and state != q.state:
            continue
        kept.append((rec, state))
        by_release[(hb.channel, hb.release)] += 1
        by_state[state] += 1
    pages = max(1, -(-len(kept) // q.per_page))
    page = min(q.page, pages)
    start = (page - 1) * q.per_page
    return FleetView(
        total=len(records), matched=len(kept), page=page, pages=pages,
        rows=tuple(kept[start:start + q.per_page]),
        by_release=tuple((c, r, n) for (c, r), n in sorted(by_release.items())),
        by_state=tuple((s, by_state[s]) for s in STATES if by_state[s]),
        farms=tuple(sorted(farms)[:500]), channels=tuple(sorted(channels)[:500]))


def fleet_json(view: FleetView, q: FleetQuery, now: int) -> dict[str, Any]:
    return {
        "total": view.total, "matched": view.matched, "page": view.page,
        "pages": view.pages, "per_page": q.per_page,
        "filters": {"farm": q.farm, "channel": q.channel, "release": q.release,
                    "state": q.state},
        "by_release": [{"channel": c, "release": r, "nodes": n}
                       for c, r, n in view.by_release],
        "by_state": dict(view.by_state),
        "nodes": [node_json(rec, now, state) for rec, state in view.rows],
    }


def release_progress(records: Iterable[NodeRecord], channel: str) -> Counter[int]:
    """Nodes of `channel` on each release."""
    return Counter(r.heartbeat.release for r in records if r.heartbeat.channel == channel)
