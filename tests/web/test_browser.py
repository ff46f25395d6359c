"""The pages in Debian's Chromium (headless, driven over WebDriver): the farmer's
download, the fleet with hostile strings from nodes, the releases page, the
400 and 404 answers. Each page's screenshot goes to docs/screenshots/."""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import pytest

from tests.lab.webdriver import SHOTS, Session, chromium, downloaded
from tests.web.conftest import WebHub, manifest, require_media_tools
from zosnode.agent.upgrade import ROLLOUT_KEY
from zosnode.wire.heartbeat import DiskReport, HardwareReport, RefusalReport, ServiceState

MARK = "window.__pwned=1"
HOSTILE = (f"<script>{MARK};alert(1)</script>", f'"><img src=x onerror="{MARK};alert(1)">',
           f"'><svg onload={MARK}>")


def no_script_ran(b: Session) -> None:
    assert b.alert_text() is None  # WebDriver: "no such alert"
    assert b.execute("return window.__pwned === undefined && "
                     "document.querySelectorAll('img[src=x],svg,script').length === 0")


def shot(b: Session, name: str) -> None:
    b.screenshot(SHOTS / f"{name}.png")


@pytest.fixture
def fleet_hub(web_hub: WebHub) -> WebHub:
    web_hub.publish(manifest("stable", 1, rollout_ppm=250_000))
    web_hub.publish(manifest("stable", 2, rollout_ppm=250_000))
    for i in range(12):
        web_hub.heartbeat(i, farm=f"farm-{'ab'[i % 2]}", release=1 + (i % 3 == 0),
                          identity_source=("tpm", "disk", "ram")[i % 3],
                          addresses=(f"10.0.0.{i + 10}", f"2001:db8::{i + 10}"),
                          services=(ServiceState("web", "running"),
                                    ServiceState("metrics", "running", 1)))
    return web_hub


def hostile_node(hub: WebHub) -> str:
    return hub.heartbeat(
        99, farm=HOSTILE[1], release=1, addresses=HOSTILE, audit=(HOSTILE[0],),
        agent_version=HOSTILE[2],
        services=tuple(ServiceState(h, "running") for h in HOSTILE),
        identity_source="disk",
        hardware=HardwareReport(cpus=2, memory_bytes=1 << 30, disks=(
            DiskReport(name="vda", size_bytes=1 << 34, model=HOSTILE[1], role="cache"),)),
        refusals=(RefusalReport(kind="manifest", reason=HOSTILE[0], at=int(time.time()) - 30),
                  RefusalReport(kind="dhcp", reason=HOSTILE[1], at=int(time.time()) - 90)))


def test_farmer_chooses_a_farm_and_an_iso_and_downloads_it(web_hub: WebHub,
                                                           tmp_path: Path) -> None:
    require_media_tools()
    web_hub.publish(manifest("stable", 1))
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with chromium(downloads) as b:
        b.get(web_hub.url + "/")
        assert b.title.startswith("Boot media")
        b.type(b.find("#farm"), "farm-42")
        b.click(b.find("input[name=kind][value=iso]"))
        shot(b, "media")
        b.click(b.find("#preview"))
        line = b.text(b.wait_for("#cmdline"))
        assert "/media/preview?" in b.url
        assert "zos.farm=farm-42" in line and "zos.channel=stable" in line
        assert f"zos.hub={web_hub.url}" in line
        shot(b, "media-preview")
        href = b.attribute(b.find("#download"), "href")
        assert href is not None
        b.click(b.find("#download"))
        iso = downloads / "zosnode.iso"
        deadline = time.monotonic() + 60
        while not downloaded(iso):
            assert time.monotonic() < deadline, list(downloads.iterdir())
            time.sleep(0.2)
        no_script_ran(b)
        # The same page on a phone: one column, nothing cut.
        b.window(390, 844)
        b.get(web_hub.url + "/")
        assert b.execute("return document.documentElement.scrollWidth <= window.innerWidth")
        shot(b, "media-phone")
    status, headers, body = web_hub.request("GET", href.removeprefix(web_hub.url))
    assert status == 200 and iso.read_bytes() == body
    assert body[0x8001:0x8006] == b"CD001"  # an ISO 9660 volume descriptor
    assert web_hub.live.hub.app.web.media.stats().builds == 1  # the second GET was cached


def test_hostile_strings_from_nodes_are_shown_as_text(fleet_hub: WebHub) -> None:
    nid = hostile_node(fleet_hub)
    with chromium() as b:
        b.get(fleet_hub.url + "/fleet")
        no_script_ran(b)
        assert "13 of 13 node(s)" in b.text(b.find("#summary"))
        assert HOSTILE[1] in b.text(b.find("#nodes"))  # the farm, as text
        shot(b, "fleet")
        b.get(fleet_hub.url + "/fleet?farm=" + "farm-a")
        assert "6 of 13" in b.text(b.find("#summary"))
        b.get(f"{fleet_hub.url}/fleet/{nid}")
        no_script_ran(b)
        services = b.text(b.find("#services"))
        assert all(h in services for h in HOSTILE)
        refusals = b.text(b.find("#refusals"))
        assert HOSTILE[0] in refusals and HOSTILE[1] in refusals
        assert HOSTILE[1] in b.text(b.find("#hardware + .table"))
        shot(b, "node")
        # A farm filter made of markup is shown back as text too.
        b.get(fleet_hub.url + "/fleet?farm=%3Cscript%3Ewindow.__pwned%3D1%3C%2Fscript%3E")
        no_script_ran(b)
    status, headers, body = fleet_hub.request("GET", f"/fleet/{nid}")
    assert status == 200 and b"<script" not in body and b"<img" not in body
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    status, _, body = fleet_hub.request("GET", f"/api/v1/nodes/{nid}")
    node = json.loads(body)
    assert node["farm"] == HOSTILE[1] and node["identity_source"] == "disk"
    assert node["refusals"][0]["reason"] == HOSTILE[0] and node["state"] == "ready"


def test_releases_page_shows_rollout_progress_and_the_commands(fleet_hub: WebHub) -> None:
    with chromium() as b:
        b.get(fleet_hub.url + "/releases")
        no_script_ran(b)
        text = b.text(b.find(".channel"))
        assert "v2, rollout 25%" in text and "4 of 12 node(s) on the current release" in text
        command = b.text(b.find("pre.command"))
        assert command.startswith(f"zosnode release pause --hub {fleet_hub.url} "
                                  "--channel stable")
        # Paused (a signed re-issue of v2): the page says so and offers resume.
        fleet_hub.publish(manifest("stable", 3, rollout_ppm=250_000,
                                   metadata={ROLLOUT_KEY: {"of": 2, "paused": True}}))
        b.get(fleet_hub.url + "/releases")
        text = b.text(b.find(".channel"))
        assert "v3 (release v2), rollout 25%, PAUSED" in text
        assert "4 of 12 node(s) on the current release" in text  # v2's nodes are on it
        assert b.text(b.find("pre.command")).startswith("zosnode release resume ")
        shot(b, "releases")
    doc = json.loads(fleet_hub.request("GET", "/api/v1/releases")[2])
    ch = doc["channels"][0]
    assert doc["roots"] == [1] and ch["current"]["version"] == 3
    assert ch["current"]["paused"] and ch["current"]["release"] == 2
    assert ch["nodes_by_release"] == {"1": 8, "2": 4} and ch["nodes_on_current"] == 4


def test_a_publisher_cannot_name_a_channel_with_markup(web_hub: WebHub) -> None:
    """Channel names (the one publisher string the pages show besides numbers)
    are layout names: markup is refused before anything is stored."""
    for target in ("/channels/%3Cscript%3E/manifest", "/channels/a%22b/manifest"):
        status, _, _ = web_hub.request("PUT", target, b"x")
        assert 400 <= status < 500  # refused (404, or 413: no route takes a body)
    assert not [p for p in (web_hub.data / "channels").iterdir() if p.name != "stable"]


@pytest.mark.parametrize(("query", "why"), [
    ("farm=bad%20farm&channel=stable&kind=iso", "farm id 'bad farm'"),
    ("farm=f1&channel=UPPER&kind=iso", "channel 'UPPER'"),
    ("farm=f1&channel=stable&kind=iso&args=zos.root%3Dabcd", "trust root is never taken"),
    ("farm=f1&channel=stable&kind=iso&args=init%3D%2Fbin%2Fsh", "'init=/bin/sh' is not allowed"),
])
def test_a_malformed_request_is_a_400_page_that_says_why(web_hub: WebHub, query: str,
                                                         why: str) -> None:
    for path in ("/media/preview", "/media/download"):
        status, headers, body = web_hub.request("GET", f"{path}?{query}")
        assert status == 400 and why in re.sub("&#x27;", "'", body.decode())
        assert headers["content-type"].startswith("text/html")
    status, _, body = web_hub.request("GET", f"/api/v1/media?{query}")
    assert status == 400 and why in json.loads(body)["error"]
    if "root" in query:
        with chromium() as b:
            b.get(f"{web_hub.url}/media/preview?{query}")
            assert why in b.text(b.find("#why"))
            shot(b, "bad-request")
    assert web_hub.live.hub.app.web.media.stats().builds == 0


def test_media_for_an_unknown_channel_is_a_404_not_a_build(web_hub: WebHub) -> None:
    for kind in ("iso", "ipxe", "efi"):
        status, _, body = web_hub.request(
            "GET", f"/media/download?farm=f1&channel=nosuch&kind={kind}")
        assert status == 404 and b"no channel" in body
    assert web_hub.live.hub.app.web.media.stats().builds == 0
    assert not list((web_hub.data / ".hub" / "media").glob("*")) if (
        web_hub.data / ".hub" / "media").exists() else True


def test_every_page_has_a_json_twin(fleet_hub: WebHub) -> None:
    for path in ("/api/v1/media", "/api/v1/media?farm=f1&channel=stable&kind=ipxe",
                 "/api/v1/fleet?state=ready&page=1", "/api/v1/releases"):
        status, headers, body = fleet_hub.request("GET", path)
        assert status == 200 and headers["content-type"] == "application/json", (path, body)
        json.loads(body)
    preview = json.loads(fleet_hub.request(
        "GET", "/api/v1/media?farm=f1&channel=stable&kind=ipxe")[2])
    status, _, script = fleet_hub.request("GET", preview["download"])
    assert status == 200 and script.startswith(b"#!ipxe") and b"zos.farm=f1" in script
    fleet = json.loads(fleet_hub.request("GET", "/api/v1/fleet?farm=farm-b&per_page=2")[2])
    assert fleet["matched"] == 6 and fleet["pages"] == 3 and len(fleet["nodes"]) == 2
    assert hashlib.sha256(fleet_hub.request("GET", "/static/hub.css")[2]).digest()
