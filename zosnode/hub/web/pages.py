"""The pages as HTML, from data the site gathered. Pure: no I/O, `now` passed in.

Every value from a node or a publisher reaches the markup through `render`
or `join` (escaped); only the templates here are `Markup`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zosnode.hub.registry import Event, NodeRecord
from zosnode.hub.web.fleet import STATES, FleetQuery, FleetView
from zosnode.hub.web.markup import Markup, join, render, url
from zosnode.hub.web.media_spec import ALLOWED_TEXT, KINDS, MediaRequest

DASH = "\u2014"


def page(title: str, body: Markup, *, json_url: str) -> Markup:
    return render(
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<title>{title} \u00b7 zosnode hub</title>'
        '<link rel="stylesheet" href="/static/hub.css"></head><body>'
        '<header><nav><a href="/">Boot media</a><a href="/fleet">Fleet</a>'
        '<a href="/releases">Releases</a><a class="json" href="{json}">JSON</a></nav>'
        '</header><main><h1>{title}</h1>{body}</main></body></html>\n',
        title=title, body=body, json=json_url)


def error_page(status: int, title: str, why: str, back: str = "/") -> Markup:
    body = render('<p class="error" id="why">{why}</p><p><a href="{back}">Back</a></p>',
                  why=why, back=back)
    return page(f"{status} {title}", body, json_url=back)


def when(at: int | None, now: int) -> str:
    if at is None:
        return DASH
    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(at))
    age = max(0, now - at)
    ago = (f"{age} s" if age < 120 else f"{age // 60} min" if age < 7200
           else f"{age // 3600} h" if age < 172800 else f"{age // 86400} d")
    return f"{stamp} ({ago} ago)"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _options(values: Sequence[str], chosen: str, any_label: str | None = None) -> Markup:
    opts = [render('<option value="">{label}</option>', label=any_label)] if any_label else []
    opts += [render('<option value="{v}"{sel}>{v}</option>', v=v,
                    sel=Markup(" selected") if v == chosen else "") for v in values]
    return join(opts)


# -- boot media ----------------------------------------------------------------------------


def media_form(channels: Sequence[str], req: Mapping[str, str]) -> Markup:
    chosen_kind = req.get("kind", "iso")
    kinds = join(render(
        '<label><input type="radio" name="kind" value="{name}"{checked}> {title}</label>',
        name=k.name, title=k.title, checked=Markup(" checked") if k.name == chosen_kind else "")
        for k in KINDS.values())
    channel = req.get("channel") or ("stable" if "stable" in channels else
                                     (channels[0] if channels else ""))
    body = render(
        '<p>Boot a machine into this hub\u2019s fleet: choose the farm it belongs to, the '
        'release channel and a medium, then download it.</p>'
        '<form class="stack" method="get" action="/media/preview">'
        '<label>1. Farm id <input type="text" name="farm" id="farm" required maxlength="64" '
        'value="{farm}" autocomplete="off" placeholder="e.g. farm-42"></label>'
        '<label>2. Channel <select name="channel" id="channel">{channels}</select></label>'
        '<fieldset><legend>3. Medium</legend>{kinds}</fieldset>'
        '<details{open}><summary>Expert: extra kernel arguments</summary>'
        '<label>Arguments <input type="text" name="args" id="args" maxlength="512" '
        'value="{args}" autocomplete="off"></label>'
        '<p class="muted">Allowed: {allowed}. Keys that say whom to trust are refused, '
        'as the node refuses them.</p></details>'
        '<button type="submit" id="preview">Preview</button></form>',
        farm=req.get("farm", ""), channels=_options(channels, channel), kinds=kinds,
        open=Markup(" open") if req.get("args") else "", args=req.get("args", ""),
        allowed=ALLOWED_TEXT)
    return page("Boot media", body, json_url="/api/v1/media")


def media_preview(r: MediaRequest, cmdline: str) -> Markup:
    kind = KINDS[r.kind]
    body = render(
        '<dl><dt>Farm</dt><dd id="farm">{farm}</dd><dt>Channel</dt><dd>{channel}</dd>'
        '<dt>Medium</dt><dd>{title}</dd></dl>'
        '<h2>Kernel command line</h2><pre id="cmdline">{cmdline}</pre>'
        '<h2>How to use it</h2><p>{instructions}</p>'
        '<p><a class="button" id="download" href="{download}" download="{filename}">'
        'Download {filename}</a> <a href="{change}">Change</a></p>',
        farm=r.farm, channel=r.channel, title=kind.title, cmdline=cmdline,
        instructions=kind.instructions, filename=kind.filename,
        download=url("/media/download", r.query()), change=url("/", r.query()))
    return page("Boot media: preview", body, json_url=url("/api/v1/media", r.query()))


# -- fleet -----------------------------------------------------------------------------------


def _state(state: str) -> Markup:
    return render('<span class="state state-{s}">{s}</span>', s=state)


def fleet_page(view: FleetView, rows: Sequence[tuple[NodeRecord, str]], q: FleetQuery,
               now: int) -> Markup:
    filters = render(
        '<form class="filters" method="get" action="/fleet">'
        '<label>Farm <select name="farm">{farms}</select></label>'
        '<label>Channel <select name="channel">{channels}</select></label>'
        '<label>Release <input type="text" name="release" value="{release}" size="6" '
        'inputmode="numeric"></label>'
        '<label>State <select name="state">{states}</select></label>'
        '<button type="submit">Filter</button></form>',
        farms=_options(view.farms, q.farm, "any"), channels=_options(view.channels, q.channel,
                                                                       "any"),
        release=q.release, states=_options(STATES, q.state, "any"))
    base: list[tuple[str, object]] = [("farm", q.farm), ("channel", q.channel),
                                      ("state", q.state)]
    releases = join(render('<li><a href="{href}">{channel} {release}</a>: {n}</li>',
                           href=url("/fleet", [*base, ("release", r)]), channel=c,
                           release=r, n=n) for c, r, n in view.by_release)
    states = join(render('<li>{state}: {n}</li>', state=_state(s), n=n)
                  for s, n in view.by_state)
    table = join(_fleet_row(rec, state, now) for rec, state in rows)
    query = [*base, ("release", q.release)]
    if q.per_page != 100:
        query.append(("per_page", q.per_page))
    nav = []
    if view.page > 1:
        nav.append(render('<a href="{h}" rel="prev">\u2190 Previous</a>',
                          h=url("/fleet", [*query, ("page", view.page - 1)])))
    nav.append(render('<span>Page {p} of {n}</span>', p=view.page, n=view.pages))
    if view.page < view.pages:
        nav.append(render('<a href="{h}" rel="next">Next \u2192</a>',
                          h=url("/fleet", [*query, ("page", view.page + 1)])))
    body = render(
        '{filters}<p id="summary">{matched} of {total} node(s).</p>'
        '<h2>Per release</h2><ul class="counts" id="by-release">{releases}</ul>'
        '<h2>Per state</h2><ul class="counts">{states}</ul>'
        '<div class="table"><table id="nodes"><thead><tr><th>Node</th><th>Farm</th>'
        '<th>Channel</th><th>Release</th><th>State</th><th>Identity</th><th>Addresses</th>'
        '<th>Last seen</th></tr></thead><tbody>{rows}</tbody></table></div>'
        '<nav class="pages">{nav}</nav>',
        filters=filters, matched=view.matched, total=view.total,
        releases=releases, states=states, rows=table, nav=join(nav))
    return page("Fleet", body, json_url=url("/api/v1/fleet", [*query, ("page", view.page)]))


def _fleet_row(rec: NodeRecord, state: str, now: int) -> Markup:
    hb = rec.heartbeat
    identity = getattr(hb, "identity_source", None)
    return render(
        '<tr><td class="mono"><a href="{href}">{short}</a></td><td>{farm}</td>'
        '<td>{channel}</td><td class="num">{release}</td><td>{state}</td>'
        '<td>{identity}</td><td class="mono">{addresses}</td><td class="seen">{seen}</td></tr>',
        href=url(f"/fleet/{hb.node_id}"), short=hb.node_id[:16], farm=hb.farm,
        channel=hb.channel, release=hb.release, state=_state(state),
        identity=identity if isinstance(identity, str) and identity != "unknown" else DASH,
        addresses=", ".join(hb.addresses[:2]) + (" …" if len(hb.addresses) > 2 else "")
        or DASH, seen=when(rec.received_at, now))


def node_page(rec: NodeRecord, state: str, events: Sequence[Event], now: int) -> Markup:
    hb = rec.heartbeat
    d = hb.to_dict()
    services = join(render('<tr><td>{name}</td><td>{state}</td><td class="num">{n}</td></tr>',
                           name=s.name, state=s.state, n=s.restarts) for s in hb.services)
    identity = d.get("identity_source")
    body = render(
        '<dl><dt>Node id</dt><dd class="mono" id="node-id">{nid}</dd><dt>Farm</dt>'
        '<dd>{farm}</dd><dt>Channel</dt><dd>{channel}</dd><dt>Release</dt><dd>{release}</dd>'
        '<dt>State</dt><dd>{state}</dd><dt>Identity source</dt><dd>{identity}</dd>'
        '<dt>Agent</dt><dd>{agent}</dd><dt>Uptime</dt><dd>{uptime} s</dd>'
        '<dt>Addresses</dt><dd class="mono">{addresses}</dd><dt>Last seen</dt><dd>{seen}</dd>'
        '<dt>Failed release</dt><dd>{failed}</dd></dl>'
        '<h2>Services</h2><div class="table"><table id="services"><thead><tr><th>Service</th>'
        '<th>State</th><th>Restarts</th></tr></thead><tbody>{services}</tbody></table></div>'
        '<h2>Hardware</h2>{hardware}<h2>Last refusals</h2>{refusals}'
        '<h2>Listening-socket audit</h2>{audit}<h2>History</h2>{history}',
        nid=hb.node_id, farm=hb.farm, channel=hb.channel, release=hb.release,
        state=_state(state), identity=identity if isinstance(identity, str) else DASH,
        agent=hb.agent_version, uptime=hb.uptime_s,
        addresses=", ".join(hb.addresses) or DASH, seen=when(rec.received_at, now),
        failed=hb.failed_release if hb.failed_release is not None else DASH,
        services=services or render('<tr><td colspan="3">{d}</td></tr>', d=DASH),
        hardware=_hardware(d.get("hardware")), refusals=_refusals(d.get("refusals"), now),
        audit=join(render('<li>{a}</li>', a=a) for a in hb.audit).join(
            (Markup("<ul>"), Markup("</ul>"))) if hb.audit else Markup("<p>nothing listens</p>"),
        history=_history(events, now))
    return page(f"Node {hb.node_id[:16]}", body, json_url=url(f"/api/v1/nodes/{hb.node_id}"))


def _hardware(hw: Any) -> Markup:
    if not isinstance(hw, Mapping):
        return Markup(f"<p>{DASH}</p>")
    raw = hw.get("disks")
    disks: list[Any] = raw if isinstance(raw, list) else []
    rows = join(render('<tr><td>{name}</td><td class="num">{size}</td><td>{model}</td>'
                       '<td>{role}</td></tr>', name=d.get("name", DASH),
                       size=_size(d["size_bytes"]) if isinstance(d.get("size_bytes"), int)
                       else DASH, model=d.get("model") or DASH, role=d.get("role", DASH))
                for d in disks if isinstance(d, Mapping))
    mem = hw.get("memory_bytes")
    return render(
        '<dl id="hardware"><dt>CPUs</dt><dd>{cpus}</dd><dt>Memory</dt><dd>{mem}</dd></dl>'
        '<div class="table"><table><thead><tr><th>Disk</th><th>Size</th><th>Model</th>'
        '<th>Role</th></tr></thead><tbody>{rows}</tbody></table></div>',
        cpus=hw.get("cpus", DASH), mem=_size(mem) if isinstance(mem, int) else DASH,
        rows=rows)


def _refusals(refusals: Any, now: int) -> Markup:
    if not isinstance(refusals, list) or not refusals:
        return Markup(f"<p>{DASH}</p>")
    rows = join(render('<tr><td>{kind}</td><td>{reason}</td><td>{at}</td></tr>',
                       kind=r.get("kind", DASH), reason=r.get("reason", DASH),
                       at=when(r["at"], now) if isinstance(r.get("at"), int) else DASH)
                for r in refusals if isinstance(r, Mapping))
    return render('<div class="table"><table id="refusals"><thead><tr><th>Kind</th>'
                  '<th>Reason</th><th>When</th></tr></thead><tbody>{rows}</tbody></table>'
                  '</div>', rows=rows)


def _history(events: Sequence[Event], now: int) -> Markup:
    if not events:
        return Markup(f"<p>{DASH}</p>")
    rows = join(render('<tr><td>{at}</td><td>{kind}</td><td>{detail}</td></tr>',
                       at=when(e.at, now), kind=e.kind, detail=e.detail) for e in events[:50])
    return render('<div class="table"><table><thead><tr><th>When</th><th>Event</th>'
                  '<th>Detail</th></tr></thead><tbody>{rows}</tbody></table></div>', rows=rows)


# -- releases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseInfo:
    version: int
    issued_at: int
    rollout_ppm: int
    paused: bool
    of: int  # the release it carries (itself unless a re-issue)
    flists: int
    services: int


@dataclass(frozen=True)
class ChannelInfo:
    name: str
    current: ReleaseInfo | None
    history: tuple[ReleaseInfo, ...]  # newest first
    releases_total: int
    nodes: Mapping[int, int]  # release version -> nodes reporting it


def _pct(ppm: int) -> str:
    return f"{ppm / 10_000:g}%"


def commands(hub: str, channel: str, paused: bool) -> list[str]:
    tail = "--root TRUSTED.root --key SIGNER.key --publisher-key PUBLISHER.key"
    steer = "resume" if paused else "pause"
    return [f"zosnode release {steer} --hub {hub} --channel {channel} {tail}",
            f"zosnode release rollout --hub {hub} --channel {channel} --fraction 50% {tail}",
            f"zosnode release promote --hub {hub} --from {channel} --to OTHER-CHANNEL {tail}"]


def releases_page(channels: Sequence[ChannelInfo], roots: Sequence[int], hub: str,
                  now: int) -> Markup:
    parts = [render('<p>Roots: {roots}</p>',
                    roots=", ".join(f"v{v}" for v in roots) or "none published yet")]
    for ch in channels:
        parts.append(_channel(ch, hub, now))
    if not channels:
        parts.append(Markup("<p>No channel has a release yet.</p>"))
    return page("Releases", join(parts), json_url="/api/v1/releases")


def _channel(ch: ChannelInfo, hub: str, now: int) -> Markup:
    cur = ch.current
    on_release = sum(n for v, n in ch.nodes.items()
                     if cur is not None and _carries(ch.history, v) == cur.of)
    total = sum(ch.nodes.values())
    nodes = join(render('<li>v{v}: {n}</li>', v=v, n=n) for v, n in sorted(ch.nodes.items()))
    history = join(render(
        '<tr><td class="num">{v}</td><td>{issued}</td><td>{rollout}</td><td>{what}</td>'
        '<td class="num">{flists}</td><td class="num">{services}</td></tr>',
        v=r.version, issued=when(r.issued_at, now), rollout=_pct(r.rollout_ppm)
        + (" (paused)" if r.paused else ""),
        what=f"re-issue of v{r.of}" if r.of != r.version else "release",
        flists=r.flists, services=r.services) for r in ch.history)
    status = DASH if cur is None else (
        f"v{cur.version}" + (f" (release v{cur.of})" if cur.of != cur.version else "")
        + f", rollout {_pct(cur.rollout_ppm)}" + (", PAUSED" if cur.paused else ""))
    cmds = commands(hub, ch.name, cur.paused if cur is not None else False)
    return render(
        '<section class="channel"><h2>Channel {name}</h2><dl><dt>Current</dt>'
        '<dd class="current">{status}</dd><dt>Progress</dt><dd>{on} of {total} node(s) on '
        'the current release</dd></dl><ul class="counts">{nodes}</ul>'
        '<p>Steer it with a signed operation (run where the signing keys are):</p>'
        '<pre class="command">{cmds}</pre>'
        '<div class="table"><table><thead><tr><th>Version</th><th>Issued</th>'
        '<th>Rollout</th><th>What</th><th>Flists</th><th>Services</th></tr></thead>'
        '<tbody>{history}</tbody></table></div><p class="muted">{shown} of {count} '
        'release record(s) shown.</p></section>',
        name=ch.name, status=status, on=on_release, total=total, nodes=nodes,
        cmds="\n".join(cmds), history=history, shown=len(ch.history),
        count=ch.releases_total)


def _carries(history: Sequence[ReleaseInfo], version: int) -> int:
    for r in history:
        if r.version == version:
            return r.of
    return version


def release_json(r: ReleaseInfo | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {"version": r.version, "issued_at": r.issued_at, "rollout_ppm": r.rollout_ppm,
            "paused": r.paused, "release": r.of, "flists": r.flists, "services": r.services}


def releases_json(channels: Sequence[ChannelInfo], roots: Sequence[int],
                  hub: str) -> dict[str, Any]:
    out = []
    for ch in channels:
        cur = ch.current
        on = sum(n for v, n in ch.nodes.items()
                 if cur is not None and _carries(ch.history, v) == cur.of)
        out.append({
            "channel": ch.name, "current": release_json(cur),
            "history": [release_json(r) for r in ch.history],
            "releases_total": ch.releases_total,
            "nodes_by_release": {str(v): n for v, n in sorted(ch.nodes.items())},
            "nodes_on_current": on, "nodes_total": sum(ch.nodes.values()),
            "commands": commands(hub, ch.name, cur.paused if cur is not None else False),
        })
    return {"roots": list(roots), "channels": out}
