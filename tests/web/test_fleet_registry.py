"""The fleet pages read the registry on every request: a node heard a moment
ago is on the next page and has its node page (no snapshot to wait for), and
the rows of a page are the nodes' whole heartbeats, read for that page only."""

from __future__ import annotations

import json

from tests.web.conftest import WebHub


def fleet(hub: WebHub, query: str = "") -> dict[str, object]:
    status, _, body = hub.request("GET", "/api/v1/fleet" + query)
    assert status == 200, body
    out: dict[str, object] = json.loads(body)
    return out


def test_a_node_just_heard_is_on_the_next_fleet_page_and_has_its_page(
        web_hub: WebHub) -> None:
    first = web_hub.heartbeat(1, farm="farm-a")
    assert fleet(web_hub)["total"] == 1  # the hub's first fleet page
    # Straight after: the old 2 s snapshot served the fleet without it.
    second = web_hub.heartbeat(2, farm="farm-b", identity_source="tpm",
                               addresses=("10.0.0.7", "10.0.0.8", "fd00::7"),
                               failed_release=3, release=2)
    view = fleet(web_hub)
    assert (view["total"], view["matched"]) == (2, 2)
    nodes = {n["node_id"]: n for n in view["nodes"]}  # type: ignore[attr-defined]
    assert set(nodes) == {first, second}
    assert nodes[second]["identity_source"] == "tpm"
    assert nodes[second]["addresses"] == ["10.0.0.7", "10.0.0.8", "fd00::7"]
    assert nodes[second]["state"] == "failed-release"
    assert fleet(web_hub, "?state=failed-release")["matched"] == 1
    assert fleet(web_hub, "?farm=farm-b&release=2")["matched"] == 1
    assert fleet(web_hub, "?farm=farm-b&release=1")["matched"] == 0
    status, _, body = web_hub.request("GET", f"/api/v1/nodes/{second}")
    assert status == 200 and json.loads(body)["failed_release"] == 3
    status, _, html = web_hub.request("GET", "/fleet?farm=farm-b")
    assert status == 200
    text = html.decode()
    assert second[:16] in text and first[:16] not in text
    assert "10.0.0.7, 10.0.0.8 …" in text and ">tpm<" in text
    status, _, _ = web_hub.request("GET", f"/fleet/{'0' * 64}")
    assert status == 404
