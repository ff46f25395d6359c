"""Clients run inside the SeaweedFS namespace by tests/hub/test_replicas.py.

`python -m tests.hub.replica_driver race PORT...`: publishes root 1 through
the first replica, then 50 rounds in which two replicas receive a manifest of
the same new version at the same moment (a barrier releases both PUTs); it
checks each round on every replica and prints the outcome as JSON.

`python -m tests.hub.replica_driver condput ENDPOINT`: whether the S3 store
honours conditional PUTs (If-None-Match: *, If-Match), printed as JSON.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from pathlib import Path

from tests.hub.releases import key
from zosnode.trust.envelope import Envelope
from zosnode.trust.manifest import Manifest
from zosnode.trust.signing import encode_envelope, encode_manifest, with_signature
from zosnode.wire.publish_auth import sign_request

ROOT_KEYS = [key("replica-root")]
PUBLISHER = key("replica publisher")
ROUNDS = 50


def request(port: int, method: str, path: str, body: bytes = b"",
            headers: dict[str, str] | None = None, host: str = "127.0.0.1"
            ) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=60)
    conn.request(method, path, body=body if method in ("PUT", "POST") else None,
                 headers=headers or {})
    r = conn.getresponse()
    out = r.read()
    conn.close()
    return r.status, out


def publish(port: int, path: str, body: bytes) -> int:
    headers = dict(sign_request(PUBLISHER, "PUT", path, body, now=int(time.time())))
    return request(port, "PUT", path, body, headers)[0]


def manifest(version: int, flavour: int) -> bytes:
    now = int(time.time())
    # Same version, different bytes: which one won is visible in the channel.
    m = Manifest(channel="stable", version=version, issued_at=now - 10 - flavour,
                 expires_at=now + 86400, flists=())
    env = Envelope("manifest", encode_manifest(m))
    for k in ROOT_KEYS:
        env = with_signature(env, k)
    return encode_envelope(env)


def race(ports: list[int]) -> dict[str, object]:
    from tests.hub.releases import signed_root

    # A fresh SeaweedFS may 500 its first writes while it allocates volumes
    # (the hub answers 503): retry the first publication, as a publisher would.
    end = time.monotonic() + 60
    while (status := publish(ports[0], "/roots/1.root",
                             signed_root(1, ROOT_KEYS, ROOT_KEYS, 1))) == 503:
        assert time.monotonic() < end, "the store never accepted a write"
        time.sleep(1)
    assert status == 201, status
    rounds: list[dict[str, object]] = []
    for version in range(1, ROUNDS + 1):
        a, b = ports[version % len(ports)], ports[(version + 1) % len(ports)]
        bodies = {a: manifest(version, 0), b: manifest(version, 1)}
        results: dict[int, int] = {}
        barrier = threading.Barrier(2)

        threads = [threading.Thread(target=_racer, args=(p, barrier, bodies[p], results))
                   for p in (a, b)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        took = time.monotonic() - t0
        winners = [p for p, s in results.items() if s == 201]
        seen = {p: request(p, "GET", "/channels/stable/manifest")[1] for p in ports}
        records = {p: request(p, "GET", f"/channels/stable/releases/{version}.manifest")[1]
                   for p in ports}
        win_body = bodies[winners[0]] if len(winners) == 1 else b""
        rounds.append({
            "version": version, "statuses": sorted(results.values()),
            "channel_is_winner": all(v == win_body for v in seen.values()),
            "record_is_winner": all(v == win_body for v in records.values()),
            "seconds": round(took, 3)})
    return {"rounds": rounds}


def _racer(port: int, barrier: threading.Barrier, body: bytes,
           results: dict[int, int]) -> None:
    barrier.wait()
    results[port] = publish(port, "/channels/stable/manifest", body)


def condput(endpoint: str) -> dict[str, object]:
    host, _, port = endpoint.removeprefix("http://").partition(":")
    p = int(port)
    request(p, "PUT", "/condtest", host=host)
    name = f"/condtest/obj-{time.time_ns()}"
    first = request(p, "PUT", name, b"one", host=host)[0]
    inm = request(p, "PUT", name, b"two", {"If-None-Match": "*"}, host=host)[0]
    after_inm = request(p, "GET", name, host=host)[1].decode()
    im = request(p, "PUT", name, b"three", {"If-Match": '"0123456789abcdef"'}, host=host)[0]
    after_im = request(p, "GET", name, host=host)[1].decode()
    return {"first_put": first, "if_none_match_star": inm, "after_if_none_match": after_inm,
            "if_match_wrong_etag": im, "after_if_match": after_im}


RETRY_STATUSES = (502, 503, 504)


def node_get(conn_box: list[http.client.HTTPConnection], port: int, method: str, path: str,
             body: bytes = b"", attempts: int = 20) -> tuple[int, bytes, int]:
    """One request as a node makes it: on a cut connection or a 5xx, retry."""
    retries = 0
    for _ in range(attempts):
        try:
            c = conn_box[0]
            c.request(method, path, body=body if method == "POST" else None)
            r = c.getresponse()
            data = r.read()
            if r.status not in RETRY_STATUSES:
                return r.status, data, retries
        except (OSError, http.client.HTTPException):
            conn_box[0].close()
            conn_box[0] = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        retries += 1
        time.sleep(0.2)
    raise RuntimeError(f"{method} {path}: no answer after {attempts} attempts")


def storm(port: int, store: str, nodes: int, parallel: int) -> dict[str, object]:
    import hashlib

    import trio

    from tests.hub.releases import signed_manifest, signed_root
    from zosnode import layout
    from zosnode.flist.store import LocalStore
    from zosnode.hub.push import push
    from zosnode.wire.heartbeat import Heartbeat, ServiceState, encode_signed

    fid = sorted(p.name for p in (Path(store) / "flists").iterdir())[0]
    size = len(LocalStore(Path(store)).get_flist(fid))
    hub = f"http://127.0.0.1:{port}"
    trio.run(lambda: push(store, hub, PUBLISHER,
                          roots=[signed_root(1, ROOT_KEYS, ROOT_KEYS, 1)],
                          manifest=signed_manifest("stable", 1, ROOT_KEYS, ((fid, size),))))
    from zosnode.hub.publish import flist_block_ids

    flist = LocalStore(Path(store)).get_flist(fid)
    blocks = flist_block_ids(flist)
    acked: dict[str, int] = {}
    failures: list[str] = []
    retries = [0]
    lock = threading.Lock()
    todo = list(range(nodes))
    print("STORM START", flush=True)
    t0 = time.monotonic()

    def boot(i: int) -> None:
        box = [http.client.HTTPConnection("127.0.0.1", port, timeout=30)]
        k = key(f"storm-node-{i}")
        nid = k.verify_key.encode().hex()
        try:
            st, _, r1 = node_get(box, port, "GET", "/channels/stable/manifest")
            st2, data, r2 = node_get(box, port, "GET", f"/{layout.flist_path(fid)}")
            assert st == 200 and st2 == 200 and layout.object_id(data) == fid, "flist"
            n = 0
            for b in blocks:
                st, data, r = node_get(box, port, "GET", f"/{layout.block_path(b)}")
                assert st == 200 and hashlib.blake2b(data, digest_size=32).hexdigest() == b
                n += r
            sent = int(time.time()) * 1000 + i  # strictly increasing per node
            for beat in range(3):
                hb = Heartbeat(node_id=nid, farm="storm", channel="stable", release=1,
                               agent_version="0.1.0", sent_at=sent + beat, uptime_s=beat,
                               services=(ServiceState("web", "running"),))
                st, _, r = node_get(box, port, "POST", "/api/v1/heartbeat",
                                    encode_signed(hb, k))
                n += r
                if st == 204:
                    with lock:
                        acked[nid] = sent + beat
                time.sleep(0.05)
            with lock:
                retries[0] += r1 + r2 + n
        except Exception as exc:  # noqa: BLE001 - a failed boot is the finding
            with lock:
                failures.append(f"node {i}: {exc!r}")
        finally:
            box[0].close()

    def worker() -> None:
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop()
            boot(i)

    threads = [threading.Thread(target=worker) for _ in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    took = time.monotonic() - t0
    status, body = request(port, "GET", "/api/v1/nodes")
    kept = {n["node_id"]: n["sent_at"] for n in json.loads(body)["nodes"]} if status == 200 else {}
    lost = [nid for nid, at in acked.items() if kept.get(nid, -1) < at]
    return {"nodes": nodes, "failures": failures[:5], "failed": len(failures),
            "acked_nodes": len(acked), "lost": lost[:5], "lost_count": len(lost),
            "retries": retries[0], "seconds": round(took, 2), "requests_per_node":
            2 + len(blocks) + 3}


def probe(ports: list[int], paths: list[str], sent_at: int) -> dict[str, object]:
    """Every path on every replica, and one heartbeat through each: the statuses."""
    out: dict[str, object] = {}
    k = key("outage-node")
    from zosnode.wire.heartbeat import Heartbeat, encode_signed

    for i, port in enumerate(ports):
        out[f"{port} get"] = sorted({request(port, "GET", p)[0] for p in paths})
        hb = Heartbeat(node_id=k.verify_key.encode().hex(), farm="f", channel="stable",
                       release=1, agent_version="0.1.0", sent_at=sent_at + i, uptime_s=1)
        out[f"{port} heartbeat"] = request(port, "POST", "/api/v1/heartbeat",
                                           encode_signed(hb, k))[0]
    return out


def main() -> None:
    if sys.argv[1] == "race":
        out = race([int(p) for p in sys.argv[2:]])
    elif sys.argv[1] == "probe":
        out = probe([int(p) for p in sys.argv[3].split(",")], sys.argv[4].split(","),
                    int(sys.argv[2]))
    elif sys.argv[1] == "storm":
        out = storm(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        out = condput(sys.argv[2])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
