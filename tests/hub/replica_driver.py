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


def main() -> None:
    if sys.argv[1] == "race":
        out = race([int(p) for p in sys.argv[2:]])
    else:
        out = condput(sys.argv[2])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
