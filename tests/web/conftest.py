"""A live hub with a root, a channel, boot files and a few nodes, for the web tests.

The hub runs in-process (tests.hub.conftest.start_hub); nodes are real signed
heartbeats POSTed to it; releases are real signed manifests PUT by a
publisher, as `hub push` and the `release` commands do.
"""

from __future__ import annotations

import hashlib
import http.client
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from tests.hub.conftest import LiveHub, start_hub
from tests.hub.releases import key, signed_root
from zosnode.http.server import Limits
from zosnode.hub.storage import LocalStorage
from zosnode.trust.envelope import Envelope
from zosnode.trust.manifest import Manifest
from zosnode.trust.signing import encode_envelope, encode_manifest, key_id, with_signature
from zosnode.wire.heartbeat import Heartbeat, ServiceState, encode_signed
from zosnode.wire.publish_auth import sign_request

TOP = Path(__file__).resolve().parents[2]
SIGNER = key("web signer")
PUBLISHER = key("web publisher")


def node_key(i: int) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(hashlib.sha256(f"web node {i}".encode()).digest())


@dataclass
class WebHub:
    live: LiveHub
    data: Path

    @property
    def url(self) -> str:
        return self.live.url

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.live.host, self.live.port, timeout=120)
        try:
            conn.request(method, path, body=body or None, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def heartbeat(self, i: int, **fields: Any) -> str:
        k = node_key(i)
        base: dict[str, Any] = dict(
            node_id=k.verify_key.encode().hex(), farm="farm-a", channel="stable", release=1,
            agent_version="0.1.0", sent_at=int(time.time() * 1000) % 2**40, uptime_s=60,
            services=(ServiceState("web", "running"),), addresses=("10.0.0.5",))
        base.update(fields)
        hb = Heartbeat(**base)
        status, _, body = self.request("POST", "/api/v1/heartbeat", encode_signed(hb, k))
        assert status == 204, body
        return hb.node_id

    def publish(self, m: Manifest) -> None:
        env = with_signature(Envelope("manifest", encode_manifest(m)), SIGNER)
        data = encode_envelope(env)
        target = f"/channels/{m.channel}/manifest"
        headers = dict(sign_request(PUBLISHER, "PUT", target, data, now=int(time.time())))
        status, _, body = self.request("PUT", target, data, headers)
        assert status == 201, body


def require_media_tools() -> None:
    """Skip unless the Debian packages the media builders run are installed."""
    from zosnode.bootmedia.errors import BuildInputError
    from zosnode.bootmedia.media import Tools

    try:
        Tools().check(efi=True)
    except BuildInputError as exc:
        pytest.skip(f"boot media tools: {exc}")


def manifest(channel: str, version: int, **kw: Any) -> Manifest:
    now = int(time.time())
    return Manifest(channel=channel, version=version, issued_at=now - 10,
                    expires_at=now + 86400 * 30, **kw)


@pytest.fixture
def web_hub(tmp_path: Path) -> Iterator[WebHub]:
    data = tmp_path / "data"
    for sub in ("blocks", "flists", "roots", "channels"):
        (data / sub).mkdir(parents=True)
    (data / "roots" / "1.root").write_bytes(signed_root(1, [SIGNER], [SIGNER], 1))
    boot = data / "boot" / "stable"
    boot.mkdir(parents=True)
    (boot / "vmlinuz").write_bytes(b"kernel " * 1000)
    (boot / "initramfs.img").write_bytes(b"initramfs " * 1000)
    live, stop = start_hub(LocalStorage(str(data)), publishers=(key_id(PUBLISHER),),
                           limits=Limits(idle_timeout_s=5, head_timeout_s=5))
    try:
        yield WebHub(live, data)
    finally:
        stop()
