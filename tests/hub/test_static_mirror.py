"""nginx serving the hub's data directory is a valid read-only mirror."""

from __future__ import annotations

import http.client
from pathlib import Path
from urllib.parse import urlsplit

import trio

from tests.hub.conftest import LiveHub
from tests.hub.releases import key, make_image, signed_manifest, signed_root
from tests.lab.nginx import nginx
from zosnode.hub.push import push

ROOT_KEYS = [key("root-a"), key("root-b")]


def fetch(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, body


def test_nginx_serves_byte_identical_objects(live_hub: LiveHub, data_dir: Path,
                                             tmp_path: Path, publisher_key: object) -> None:
    image = make_image(tmp_path)
    image.store.set_tag("base", image.flist_id)
    roots = [signed_root(1, ROOT_KEYS, ROOT_KEYS, 2)]
    manifest = signed_manifest("stable", 1, ROOT_KEYS,
                               ((image.flist_id, len(image.flist_bytes)),))
    trio.run(lambda: push(str(image.store.path), live_hub.url, publisher_key,  # type: ignore
                          roots=roots, manifest=manifest))
    paths = sorted("/" + str(p.relative_to(data_dir)) for p in data_dir.rglob("*")
                   if p.is_file())
    kinds = {p.split("/")[1] for p in paths}
    assert kinds == {"blocks", "flists", "roots", "channels", "tags"}
    assert "/channels/stable/manifest" in paths and "/roots/1.root" in paths
    with nginx(data_dir, tmp_path / "nginx") as mirror:
        for path in paths:
            hub_status, hub_body = fetch(live_hub.url, path)
            ng_status, ng_body = fetch(mirror.url, path)
            assert hub_status == ng_status == 200, path
            assert hub_body == ng_body == (data_dir / path.lstrip("/")).read_bytes(), path
            rng = {"Range": "bytes=5-"}
            assert fetch(live_hub.url, path, rng) == fetch(mirror.url, path, rng), path
        # What a node asks that is not there: both say 404.
        for path in ("/roots/2.root", "/channels/stable/releases/9.manifest"):
            assert fetch(live_hub.url, path)[0] == fetch(mirror.url, path)[0] == 404
