"""The web layer's pure parts: escaping, media requests and kernel arguments, fleet
states and filters, and the node's rollout decision for re-issued releases."""

from __future__ import annotations

import pytest

from zosnode.agent.upgrade import (
    ROLLOUT_KEY,
    Ignore,
    IgnoreWhy,
    Stage,
    UpgradePolicy,
    in_rollout,
    rollout_paused,
    rollout_release,
)
from zosnode.hub.registry import FleetRow, NodeRecord, fleet_row
from zosnode.hub.web import fleet
from zosnode.hub.web.errors import PageInputError
from zosnode.hub.web.markup import Markup, escape, join, render, url
from zosnode.hub.web.media_spec import MediaRequest, check_kernel_args, parse_query
from zosnode.trust.manifest import PPM, FlistPin, Manifest, ServiceSpec
from zosnode.wire.heartbeat import Heartbeat, ServiceState

HOSTILE = ('<script>alert(1)</script>', '"><img src=x onerror=alert(1)>', "' onmouseover='x")


@pytest.mark.parametrize("text", HOSTILE)
def test_values_are_escaped_unless_ours(text: str) -> None:
    out = render('<p title="{v}">{v}</p>', v=text)
    safe = (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#x27;"))
    assert out == f'<p title="{safe}">{safe}</p>'
    assert not set(safe) & set("<>\"'")
    assert render("{v}", v=Markup("<b>ours</b>")) == "<b>ours</b>"
    assert join([text, Markup("<br>")]) == escape(text) + "<br>"
    assert "<" not in url("/fleet", [("farm", text)])


def test_url_refuses_anything_but_a_site_path() -> None:
    for bad in ("javascript:alert(1)", "//evil.example/x", "http://x/"):
        with pytest.raises(ValueError):
            url(bad)


def test_trust_keys_are_refused_in_the_nodes_own_words() -> None:
    with pytest.raises(PageInputError, match="trust root is never taken from the command"):
        check_kernel_args("quiet zos.root=abc")
    with pytest.raises(PageInputError, match="trust root"):
        check_kernel_args("zos.trust.extra=1")
    with pytest.raises(PageInputError, match="unknown key"):
        check_kernel_args("zos.cachex=1")
    with pytest.raises(PageInputError, match="scheme must be http"):
        check_kernel_args("zos.hub=ftp://h/")
    with pytest.raises(PageInputError, match="own field"):
        check_kernel_args("zos.farm=other")
    with pytest.raises(PageInputError, match="not allowed"):
        check_kernel_args("init=/bin/sh")
    with pytest.raises(PageInputError, match="at most 16"):
        check_kernel_args("quiet " * 17)
    assert check_kernel_args('quiet  loglevel=3 console=ttyS0,115200 zos.debug '
                             'zos.hub=http://10.0.0.1:8080') == (
        "quiet", "loglevel=3", "console=ttyS0,115200", "zos.debug",
        "zos.hub=http://10.0.0.1:8080")


def test_media_requests_are_checked_and_keyed_by_content() -> None:
    for query, why in (({"farm": "a b"}, "farm id"), ({"farm": "<x>"}, "farm id"),
                       ({"farm": "f", "channel": "Stable"}, "channel"),
                       ({"farm": "f", "channel": "../x"}, "channel"),
                       ({"farm": "f", "kind": "exe"}, "kind"), ({}, "give a farm id")):
        with pytest.raises(PageInputError, match=why):
            parse_query(query)
    r = parse_query({"farm": "farm-1", "channel": "stable", "kind": "iso", "args": "quiet"})
    assert r == MediaRequest("farm-1", "stable", "iso", ("quiet",))
    line = r.cmdline("http://hub:8080")
    assert "zos.farm=farm-1" in line and "zos.channel=stable" in line and "quiet" in line
    k = r.key("http://hub:8080", ("a", "b"))
    assert k == r.key("http://hub:8080", ("a", "b"))
    assert len({k, r.key("http://hub:8080", ("a", "c")), r.key("http://other", ("a", "b")),
                MediaRequest("farm-2", "stable", "iso").key("http://hub:8080", ("a", "b"))}) == 4
    with pytest.raises(PageInputError, match="hub"):
        r.config("http://a b")


NODE = "ab" * 32


def m(version: int, ppm: int = PPM, meta: dict[str, object] | None = None) -> Manifest:
    return Manifest(channel="stable", version=version, issued_at=1, expires_at=2**40,
                    rollout_ppm=ppm, metadata=meta or {},
                    flists=(FlistPin("base", "0" * 64, 10, "/opt/base"),),
                    services=(ServiceSpec("svc", "base", ("bin/svc",)),))


def reissue(version: int, of: int, paused: bool, ppm: int = PPM) -> Manifest:
    return m(version, ppm, {ROLLOUT_KEY: {"of": of, "paused": paused}})


def on(version: int, node: str = NODE) -> UpgradePolicy:
    p = UpgradePolicy(node)
    assert isinstance(p.offer(m(version)), Stage)
    p.staged_ready()
    return p


def test_a_paused_rollout_is_not_staged_and_resuming_it_is() -> None:
    p = on(1)
    paused = p.offer(reissue(3, of=2, paused=True))
    assert paused == Ignore(3, IgnoreWhy.PAUSED)
    assert paused.describe() == "release 3 not applied: the rollout is paused"  # the console line
    assert p.current == 1
    stage = p.offer(reissue(4, of=2, paused=False))
    assert isinstance(stage, Stage)
    p.staged_ready()
    # Another re-issue of the same release is the release it runs, not an upgrade.
    assert p.offer(reissue(5, of=2, paused=True)) == Ignore(5, IgnoreWhy.SAME)
    assert p.offer(reissue(6, of=2, paused=False, ppm=PPM)) == Ignore(6, IgnoreWhy.SAME)


def test_a_node_on_the_release_ignores_its_reissues() -> None:
    p = on(2)
    assert p.offer(reissue(3, of=2, paused=True)) == Ignore(3, IgnoreWhy.SAME)
    assert p.offer(reissue(4, of=2, paused=False)) == Ignore(4, IgnoreWhy.SAME)
    assert isinstance(p.offer(m(5)), Stage)  # a new release is an upgrade again


def test_boot_takes_a_paused_release_a_node_must_run_something() -> None:
    assert isinstance(UpgradePolicy(NODE).offer(reissue(3, of=2, paused=True)), Stage)


def test_raising_the_fraction_only_adds_nodes() -> None:
    nodes = [f"{i:064x}" for i in range(2000)]
    small = {n for n in nodes if in_rollout(n, m(7, ppm=100_000))}
    large = {n for n in nodes if in_rollout(n, reissue(8, of=7, paused=False, ppm=400_000))}
    assert small < large and 0.3 < len(large) / len(nodes) < 0.5
    # A plain new version draws a new wave (the old rule, unchanged).
    assert {n for n in nodes if in_rollout(n, m(8, ppm=100_000))} != small


def test_a_release_that_failed_is_not_retried_through_a_reissue() -> None:
    p = on(1)
    p.offer(m(2))
    p.staged_failed()
    assert p.offer(reissue(3, of=2, paused=False)) == Ignore(3, IgnoreWhy.FAILED_BEFORE)


@pytest.mark.parametrize("meta", [{ROLLOUT_KEY: "paused"}, {ROLLOUT_KEY: {"of": 99}},
                                  {ROLLOUT_KEY: {"of": True, "paused": 1}}, {}])
def test_malformed_rollout_metadata_is_a_plain_release(meta: dict[str, object]) -> None:
    x = m(5, meta=meta)
    assert rollout_release(x) == 5 and not rollout_paused(x)


def record(i: int, *, received: int, release: int = 1, farm: str = "a",
           states: tuple[str, ...] = ("running",), failed: int | None = None) -> FleetRow:
    hb = Heartbeat(node_id=f"{i:064x}", farm=farm, channel="stable", release=release,
                   agent_version="1", sent_at=received, uptime_s=1, failed_release=failed,
                   services=tuple(ServiceState(f"s{j}", s) for j, s in enumerate(states)))
    return fleet_row(NodeRecord(hb, received))


def test_fleet_states_filters_counts_and_pages() -> None:
    now = 10_000
    recs = [record(i, received=now - 5, farm="a" if i % 2 else "b") for i in range(250)]
    recs += [record(1000, received=now - 5000), record(1001, received=now, failed=2),
             record(1002, received=now, states=("failed",))]
    current = {"stable": m(2)}
    states = [fleet.fleet_state(r, now, 600, current) for r in recs[-4:]]
    assert states == ["upgrading", "stale", "failed-release", "failed"]
    assert fleet.fleet_state(recs[0], now, 600, {"stable": reissue(3, 2, True)}) == "ready"
    q = fleet.parse_query({"farm": "a", "page": "2"})
    view = fleet.select(recs, q, now, 600, {})
    assert (view.total, view.matched, view.page, view.pages, len(view.rows)) == (
        253, 128, 2, 2, 28)
    assert fleet.select(recs, fleet.parse_query({"state": "stale"}), now, 600, {}).matched == 1
    assert fleet.select(recs, fleet.parse_query({"release": "2"}), now, 600, {}).matched == 0
    assert view.by_release == (("stable", 1, 128),)
    for bad in ({"state": "x"}, {"page": "0"}, {"release": "-1"}, {"per_page": "5000"}):
        with pytest.raises(PageInputError):
            fleet.parse_query(bad)


def test_a_node_whose_services_are_ready_is_ready() -> None:
    """The supervisor's words (zosnode.agent.services.events.State): "ready" and
    "done" are up; the registry once counted "ready" as still starting."""
    from zosnode.agent.services.events import State

    up = record(1, received=10, states=(State.READY.value, State.DONE.value))
    assert up.state == "ready"
    assert fleet.fleet_state(up, 10, 600, {}) == "ready"
    probing = record(2, received=10, states=(State.STARTING.value,))
    assert probing.state == "starting"
