"""The hub on an S3 bucket: a real SeaweedFS, signed requests, push and serve.

SeaweedFS, the hub and the publishing client all run inside one network
namespace the test creates (loopback only); the test talks to them through
`ip netns exec`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hub.releases import key, make_image, signed_manifest, signed_root
from tests.lab.netns import nsexec
from tests.lab.seaweed import Seaweed, seaweed
from zosnode import layout
from zosnode.trust.keyfile import HEADER

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CREDS = ("zoshubtest", "zoshub-secret-key-for-tests")
ROOT_KEYS = [key("root-a"), key("root-b")]
HUB = "http://127.0.0.1:7070"


@pytest.fixture(scope="module")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    with seaweed(tmp_path_factory.mktemp("weed"), credentials=CREDS) as sw:
        yield sw


def env(signed: bool = True) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    out["PYTHONPATH"] = str(REPO)
    if signed:
        out.update(AWS_ACCESS_KEY_ID=CREDS[0], AWS_SECRET_ACCESS_KEY=CREDS[1])
    return out


def in_ns(sw: Seaweed, *argv: str, signed: bool = True,
          timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(nsexec(sw.ns, *argv), capture_output=True, env=env(signed),
                          cwd=REPO, timeout=timeout)


def curl(sw: Seaweed, url: str) -> tuple[int, bytes]:
    out = in_ns(sw, "curl", "-s", "--max-time", "10", "-w", "\n%{http_code}", url)
    body, _, code = out.stdout.rpartition(b"\n")
    return int(code), body


def test_hub_serves_and_push_writes_to_seaweedfs(weed: Seaweed, tmp_path: Path) -> None:
    publisher = key("s3 publisher")
    keyfile = tmp_path / "pub.key"
    keyfile.write_text(f"{HEADER}\n{bytes(publisher).hex()}\n")
    keyfile.chmod(0o600)
    image = make_image(tmp_path, files=8)
    (tmp_path / "root1").write_bytes(signed_root(1, ROOT_KEYS, ROOT_KEYS, 2))
    manifest = signed_manifest("stable", 1, ROOT_KEYS,
                               ((image.flist_id, len(image.flist_bytes)),))
    (tmp_path / "manifest").write_bytes(manifest)

    log = open(tmp_path / "hub.log", "wb")
    hub = subprocess.Popen(
        nsexec(weed.ns, sys.executable, "-m", "zosnode", "hub", "serve",
               "--store", "s3://zoshub/prod", "--s3-endpoint", weed.endpoint,
               "--listen", "127.0.0.1:7070",
               "--publisher", publisher.verify_key.encode().hex()),
        stdout=log, stderr=subprocess.STDOUT, env=env(), cwd=REPO)
    try:
        end = time.monotonic() + 30
        while curl(weed, HUB + "/api/v1/channels")[0] != 200:
            assert hub.poll() is None, (tmp_path / "hub.log").read_text()
            assert time.monotonic() < end, "hub did not come up"
            time.sleep(0.2)
        out = in_ns(weed, sys.executable, "-m", "zosnode", "hub", "push", "--hub", HUB,
                    "--key", str(keyfile), "--store", str(image.store.path),
                    "--root", str(tmp_path / "root1"), "--manifest", str(tmp_path / "manifest"))
        assert out.returncode == 0, out.stderr.decode()
        assert b"manifest stable v1" in out.stdout
        # Through the hub, and straight from the bucket (signed reads only:
        # the anonymous read below must fail), the same bytes.
        wanted = {layout.flist_path(image.flist_id): image.flist_bytes,
                  "channels/stable/manifest": manifest,
                  "channels/stable/releases/1.manifest": manifest}
        for b in image.block_ids:
            wanted[layout.block_path(b)] = image.store.get_block(b)
        for key_, data in wanted.items():
            assert curl(weed, f"{HUB}/{key_}") == (200, data), key_
        assert curl(weed, f"{weed.endpoint}/zoshub/prod/{layout.flist_path(image.flist_id)}")[0] \
            in (401, 403)
        status, body = curl(weed, HUB + "/api/v1/flists")
        assert status == 200 and image.flist_id.encode() in body
        status, body = curl(weed, HUB + "/api/v1/channels/stable/releases")
        assert status == 200 and b"1" in body
        # A second push finds everything there.
        out = in_ns(weed, sys.executable, "-m", "zosnode", "hub", "push", "--hub", HUB,
                    "--key", str(keyfile), "--store", str(image.store.path))
        assert out.returncode == 0 and out.stdout.startswith(b"pushed 0 of"), out.stderr
        # Range and conditional requests work the same on this backend.
        b0 = image.block_ids[0]
        out = in_ns(weed, "curl", "-s", "-r", "0-9", f"{HUB}/{layout.block_path(b0)}")
        assert out.stdout == image.store.get_block(b0)[:10]
    finally:
        hub.send_signal(signal.SIGTERM)
        try:
            rc = hub.wait(timeout=20)
        except subprocess.TimeoutExpired:
            hub.kill()
            rc = hub.wait()
        log.close()
    text = (tmp_path / "hub.log").read_text()
    assert rc == 0, text
    assert "S3 bucket zoshub/prod" in text and "stopped" in text


def test_unsigned_s3_requests_are_refused_by_seaweedfs(weed: Seaweed) -> None:
    # Proof that our SigV4 signatures are what SeaweedFS checks: the same
    # client without credentials is turned away.
    code = (
        "import trio\n"
        "from zosnode.hub.s3 import S3Storage\n"
        "from zosnode.hub.storage import StorageError\n"
        f"s = S3Storage.from_url('s3://zoshub/prod', {weed.endpoint!r})\n"
        "async def main():\n"
        "    try:\n"
        "        await s.put('blocks/aa/' + 'a' * 64, b'x')\n"
        "    except StorageError as e:\n"
        "        print('refused', e)\n"
        "    else:\n"
        "        print('accepted')\n"
        "trio.run(main)\n"
    )
    out = in_ns(weed, sys.executable, "-c", code, signed=False)
    assert out.stdout.startswith(b"refused"), out.stdout + out.stderr
    out = in_ns(weed, sys.executable, "-c", code.replace("b'x'", "b'y'"), signed=True)
    assert out.stdout.startswith(b"accepted"), out.stdout + out.stderr
