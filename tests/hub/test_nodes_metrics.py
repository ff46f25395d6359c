"""Node registry over HTTP, `hub nodes`, and /metrics."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys

from tests.hub.conftest import LiveHub
from tests.hub.releases import key
from zosnode.wire.heartbeat import Heartbeat, ServiceState, encode_signed


def post(live: LiveHub, path: str, body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(live.host, live.port, timeout=10)
    conn.request("POST", path, body=body)
    r = conn.getresponse()
    out = r.read()
    conn.close()
    return r.status, out


def get(live: LiveHub, path: str) -> bytes:
    conn = http.client.HTTPConnection(live.host, live.port, timeout=10)
    conn.request("GET", path)
    r = conn.getresponse()
    assert r.status == 200
    return r.read()


def hb(name: str, release: int, sent_at: int) -> bytes:
    k = key(name)
    return encode_signed(Heartbeat(
        node_id=k.verify_key.encode().hex(), farm="farm-1", channel="stable", release=release,
        agent_version="0.1.0", sent_at=sent_at, uptime_s=sent_at - 1000,
        services=(ServiceState("web", "running"),), addresses=("10.1.0.2/24",)), k)


def test_heartbeats_listed_latest_per_node(live_hub: LiveHub) -> None:
    assert post(live_hub, "/api/v1/heartbeat", hb("a", 1, 2000))[0] == 204
    assert post(live_hub, "/api/v1/heartbeat", hb("b", 1, 2000))[0] == 204
    assert post(live_hub, "/api/v1/heartbeat", hb("a", 2, 2100))[0] == 204
    # A replay of an older heartbeat cannot roll node a back.
    assert post(live_hub, "/api/v1/heartbeat", hb("a", 1, 2000))[0] == 409
    status, out = post(live_hub, "/api/v1/heartbeat", hb("c", 1, 2000)[:-3] + b"xyz")
    assert status == 400
    doc = json.loads(get(live_hub, "/api/v1/nodes"))
    assert doc["count"] == 2
    by_id = {n["node_id"]: n for n in doc["nodes"]}
    assert by_id[key("a").verify_key.encode().hex()]["release"] == 2
    assert by_id[key("b").verify_key.encode().hex()]["services"] == [
        {"name": "web", "state": "running", "restarts": 0}]

    out_cli = subprocess.run([sys.executable, "-m", "zosnode", "hub", "nodes", "--hub",
                              live_hub.url], capture_output=True, text=True, timeout=60)
    assert out_cli.returncode == 0, out_cli.stderr
    assert "2 node(s)" in out_cli.stdout and "web=running" in out_cli.stdout
    assert out_cli.stdout.count(" ready ") == 2  # the STATE column, from the registry

    metrics = get(live_hub, "/metrics").decode()
    assert 'zos_hub_nodes_by_release{channel="stable",release="2"} 1' in metrics
    assert 'zos_hub_nodes_by_release{channel="stable",release="1"} 1' in metrics
    assert 'zos_hub_requests_total{route="/api/v1/heartbeat",method="POST",status="204"} 3' \
        in metrics
    assert 'zos_hub_refused_total{reason="stale-heartbeat"} 1' in metrics
    assert 'zos_hub_nodes_by_state{state="ready"} 2' in metrics
    assert "zos_hub_registry_up 1" in metrics and "zos_hub_nodes_stale " in metrics
    assert "zos_hub_open_connections 1" in metrics


def test_metrics_count_bytes_and_statuses(live_hub: LiveHub,
                                          small_block: tuple[str, bytes]) -> None:
    b, data = small_block
    conn = http.client.HTTPConnection(live_hub.host, live_hub.port, timeout=10)
    for _ in range(3):
        conn.request("GET", f"/blocks/{b[:2]}/{b}")
        assert conn.getresponse().read() == data
    conn.request("GET", f"/blocks/{b[:2]}/{b}", headers={"Range": "bytes=0-99"})
    assert len(conn.getresponse().read()) == 100
    conn.request("GET", "/blocks/00/" + "0" * 64)
    conn.getresponse().read()
    metrics = get(live_hub, "/metrics").decode()
    assert 'zos_hub_requests_total{route="/blocks",method="GET",status="200"} 3' in metrics
    assert 'zos_hub_requests_total{route="/blocks",method="GET",status="206"} 1' in metrics
    assert 'zos_hub_requests_total{route="/blocks",method="GET",status="404"} 1' in metrics
    expected = 3 * len(data) + 100 + len(b"not found\n")
    assert f'zos_hub_bytes_served_total{{route="/blocks"}} {expected}' in metrics
    # Every line is a comment or `name{labels} value`.
    for line in metrics.splitlines():
        assert line.startswith("#") or len(line.rsplit(" ", 1)) == 2


def test_nodes_cli_user_error(tmp_path: object) -> None:
    out = subprocess.run([sys.executable, "-m", "zosnode", "hub", "nodes", "--hub",
                          "http://127.0.0.1:9"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
