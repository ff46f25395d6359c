"""Publishing: signed, fresh, verified and atomic, or refused with nothing visible."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import nacl.signing
import pytest
import trio

from tests.hub.conftest import LiveHub, bid
from tests.hub.releases import key, make_image, signed_manifest, signed_root
from zosnode import layout
from zosnode.hub.push import push
from zosnode.trust.keyfile import HEADER
from zosnode.wire.publish_auth import sign_request

ROOT_KEYS = [key("root-a"), key("root-b"), key("root-c")]


def send(live: LiveHub, method: str, path: str, body: bytes,
         signer: nacl.signing.SigningKey | None, *, now: int | None = None,
         nonce: str | None = None, headers: tuple[tuple[str, str], ...] | None = None,
         ) -> tuple[int, bytes, tuple[tuple[str, str], ...]]:
    if headers is None:
        headers = () if signer is None else sign_request(
            signer, method, path, body, now=now or int(time.time()), nonce=nonce)
    conn = http.client.HTTPConnection(live.host, live.port, timeout=10)
    conn.request(method, path, body=body, headers=dict(headers))
    r = conn.getresponse()
    out = r.read()
    conn.close()
    return r.status, out, headers


def files_under(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()}


def test_unsigned_forged_stale_and_unknown_key_refused(
        live_hub: LiveHub, publisher_key: nacl.signing.SigningKey, data_dir: Path) -> None:
    body = os.urandom(1000)
    path = "/" + layout.block_path(bid(body))
    before = files_under(data_dir)
    assert send(live_hub, "PUT", path, body, None)[0] == 401
    assert send(live_hub, "PUT", path, body, key("stranger"))[0] == 401
    # Signed over other bytes, then a body swapped in.
    hdrs = sign_request(publisher_key, "PUT", path, b"other", now=int(time.time()))
    assert send(live_hub, "PUT", path, body, None, headers=hdrs)[0] == 401
    # Signed for another path.
    hdrs = sign_request(publisher_key, "PUT", "/blocks/00/" + "0" * 64, body,
                        now=int(time.time()))
    assert send(live_hub, "PUT", path, body, None, headers=hdrs)[0] == 401
    assert send(live_hub, "PUT", path, body, publisher_key, now=int(time.time()) - 3600)[0] == 401
    assert send(live_hub, "PUT", path, body, publisher_key, now=int(time.time()) + 3600)[0] == 401
    assert files_under(data_dir) == before
    assert send(live_hub, "PUT", path, body, publisher_key)[0] == 201
    assert (data_dir / path.lstrip("/")).read_bytes() == body


def test_replayed_request_refused(live_hub: LiveHub,
                                  publisher_key: nacl.signing.SigningKey) -> None:
    body = os.urandom(100)
    path = "/" + layout.block_path(bid(body))
    status, _, hdrs = send(live_hub, "PUT", path, body, publisher_key)
    assert status == 201
    status, out, _ = send(live_hub, "PUT", path, body, None, headers=hdrs)
    assert status == 401 and b"replayed" in out


def test_body_not_hashing_to_its_id_refused(live_hub: LiveHub, data_dir: Path,
                                            publisher_key: nacl.signing.SigningKey) -> None:
    good = os.urandom(500)
    path = "/" + layout.block_path(bid(good))
    # Its last byte flipped: a random body could already end in any constant byte.
    status, out, _ = send(live_hub, "PUT", path, good[:-1] + bytes([good[-1] ^ 1]), publisher_key)
    assert status == 422 and b"hash-mismatch" in out
    fake_flist = b"not an flist"
    status, _, _ = send(live_hub, "PUT", "/flists/" + bid(b"x"), fake_flist, publisher_key)
    assert status == 422
    assert files_under(data_dir) == set()


def test_flist_with_missing_blocks_refused(live_hub: LiveHub, data_dir: Path, tmp_path: Path,
                                          publisher_key: nacl.signing.SigningKey) -> None:
    image = make_image(tmp_path)
    path = "/" + layout.flist_path(image.flist_id)
    # All blocks but one.
    for b in image.block_ids[1:]:
        stored = image.store.get_block(b)
        assert send(live_hub, "PUT", "/" + layout.block_path(b), stored, publisher_key)[0] == 201
    status, out, _ = send(live_hub, "PUT", path, image.flist_bytes, publisher_key)
    assert status == 422 and b"missing-blocks" in out
    assert not (data_dir / "flists" / image.flist_id).exists()
    b = image.block_ids[0]
    assert send(live_hub, "PUT", "/" + layout.block_path(b), image.store.get_block(b),
                publisher_key)[0] == 201
    assert send(live_hub, "PUT", path, image.flist_bytes, publisher_key)[0] == 201


def test_roots_and_manifests_verified(live_hub: LiveHub, data_dir: Path, tmp_path: Path,
                                      publisher_key: nacl.signing.SigningKey) -> None:
    k = publisher_key
    image = make_image(tmp_path)
    pin = ((image.flist_id, len(image.flist_bytes)),)
    # No root yet: a manifest has nothing to verify against.
    m1 = signed_manifest("stable", 1, ROOT_KEYS[:2])
    assert send(live_hub, "PUT", "/channels/stable/manifest", m1, k)[0] == 422
    # Root 1 must be self-signed to its threshold (2 of 3).
    weak = signed_root(1, ROOT_KEYS[:1], ROOT_KEYS, 2)
    assert send(live_hub, "PUT", "/roots/1.root", weak, k)[0] == 422
    root1 = signed_root(1, ROOT_KEYS[:2], ROOT_KEYS, 2)
    assert send(live_hub, "PUT", "/roots/2.root", root1, k)[0] == 409  # gap
    assert send(live_hub, "PUT", "/roots/1.root", root1, k)[0] == 201
    # Root 2 rotating to new keys, signed only by the new ones: refused.
    new_keys = [key("new-a"), key("new-b")]
    rogue = signed_root(2, new_keys, new_keys, 1)
    status, out, _ = send(live_hub, "PUT", "/roots/2.root", rogue, k)
    assert status == 422 and b"bad-root" in out
    assert not (data_dir / "roots" / "2.root").exists()
    # A manifest under the threshold.
    under = signed_manifest("stable", 1, ROOT_KEYS[:1])
    status, out, _ = send(live_hub, "PUT", "/channels/stable/manifest", under, k)
    assert status == 422 and b"bad-manifest" in out
    # A manifest pinning an flist the hub does not have.
    status, out, _ = send(live_hub, "PUT", "/channels/stable/manifest",
                          signed_manifest("stable", 1, ROOT_KEYS[:2], pin), k)
    assert status == 422 and b"missing-flists" in out
    # Signed for another channel than the path says.
    status, _, _ = send(live_hub, "PUT", "/channels/beta/manifest",
                        signed_manifest("stable", 1, ROOT_KEYS[:2]), k)
    assert status == 422
    assert send(live_hub, "PUT", "/channels/stable/manifest",
                signed_manifest("stable", 2, ROOT_KEYS[1:]), k)[0] == 201
    assert send(live_hub, "PUT", "/channels/stable/manifest",
                signed_manifest("stable", 1, ROOT_KEYS[:2]), k)[0] == 409  # older
    status, out, _ = send(live_hub, "PUT", "/channels/stable/manifest",
                          signed_manifest("stable", 2, ROOT_KEYS[:2]), k)
    assert status == 409 and b"not-newer" in out
    assert (data_dir / "channels/stable/releases/2.manifest").exists()
    assert files_under(data_dir / "channels") == {"stable/manifest",
                                                  "stable/releases/2.manifest"}
    # Root 2, rotating properly (old threshold and new threshold), then a
    # manifest signed by the new keys only.
    root2 = signed_root(2, [*ROOT_KEYS[:2], *new_keys], new_keys, 2)
    assert send(live_hub, "PUT", "/roots/2.root", root2, k)[0] == 201
    assert send(live_hub, "PUT", "/channels/stable/manifest",
                signed_manifest("stable", 3, ROOT_KEYS), k)[0] == 422
    assert send(live_hub, "PUT", "/channels/stable/manifest",
                signed_manifest("stable", 3, new_keys), k)[0] == 201


def test_interrupted_upload_leaves_nothing(live_hub: LiveHub, data_dir: Path,
                                           publisher_key: nacl.signing.SigningKey) -> None:
    body = os.urandom(2 * 1024 * 1024)
    path = "/" + layout.block_path(bid(body))
    hdrs = sign_request(publisher_key, "PUT", path, body, now=int(time.time()))
    head = f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in hdrs) + "\r\n"
    with socket.create_connection((live_hub.host, live_hub.port), timeout=10) as s:
        s.sendall(head.encode() + body[: len(body) // 2])
        time.sleep(0.2)
        # Abort: RST, not FIN, as a killed client would.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    time.sleep(0.3)
    assert files_under(data_dir) == set()
    status, _, _ = send(live_hub, "GET", path, b"", None)
    assert status == 404


def test_upload_killed_mid_body_leaves_nothing(live_hub: LiveHub, data_dir: Path,
                                               publisher_key: nacl.signing.SigningKey) -> None:
    # A real client process killed with SIGKILL while its body is in flight.
    body_len = 6 * 1024 * 1024
    script = f"""
import socket, sys, time
s = socket.create_connection(({live_hub.host!r}, {live_hub.port}))
s.sendall(b"PUT /blocks/00/{'0' * 64} HTTP/1.1\\r\\nHost: x\\r\\n"
          b"Content-Length: {body_len}\\r\\n\\r\\n")
s.sendall(b"a" * 65536)
print("sent", flush=True)
time.sleep(60)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"sent"
    finally:
        proc.kill()
        proc.wait()
    time.sleep(0.3)
    assert files_under(data_dir) == set()


def _write_key(path: Path, k: nacl.signing.SigningKey) -> None:
    path.write_text(f"{HEADER}\n{bytes(k).hex()}\n")
    path.chmod(0o600)


def test_push_sends_only_what_is_missing(live_hub: LiveHub, data_dir: Path, tmp_path: Path,
                                         publisher_key: nacl.signing.SigningKey) -> None:
    image = make_image(tmp_path)
    roots = [signed_root(1, ROOT_KEYS[:2], ROOT_KEYS, 2)]
    manifest = signed_manifest("stable", 1, ROOT_KEYS[:2],
                               ((image.flist_id, len(image.flist_bytes)),))
    image.store.set_tag("base-os", image.flist_id)
    # Two blocks are already there.
    for b in image.block_ids[:2]:
        send(live_hub, "PUT", "/" + layout.block_path(b), image.store.get_block(b), publisher_key)
    lines: list[str] = []
    report = trio.run(lambda: push(str(image.store.path), live_hub.url, publisher_key,
                                   roots=roots, manifest=manifest, progress=lines.append))
    assert report.blocks_total == len(image.block_ids)
    assert report.blocks_sent == len(image.block_ids) - 2
    assert report.flists_sent == 1 and report.roots_sent == 1 and report.tags_sent == 1
    assert (data_dir / "tags/base-os").read_text() == image.flist_id + "\n"
    assert report.manifest == "stable v1"
    assert any("blocks" in line for line in lines)
    for b in image.block_ids:
        assert (data_dir / layout.block_path(b)).read_bytes() == image.store.get_block(b)
    assert (data_dir / "flists" / image.flist_id).read_bytes() == image.flist_bytes
    assert (data_dir / "channels/stable/manifest").read_bytes() == manifest
    # Again, through the CLI: nothing left to send.
    keyfile = tmp_path / "pub.key"
    _write_key(keyfile, publisher_key)
    out = subprocess.run(
        [sys.executable, "-m", "zosnode", "hub", "push", "--hub", live_hub.url,
         "--key", str(keyfile), "--store", str(image.store.path)],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("pushed 0 of") and "0 tag(s)" in out.stdout
    assert "hub lacks 0 block(s)" in out.stderr


@pytest.mark.parametrize("argv, message", [
    (["--key", "/nonexistent.key"], "no such key file"),
    (["--store", "/nonexistent"], "no such directory"),
    (["--hub", "ftp://x"], "not an http://"),
])
def test_push_user_errors_are_one_line(tmp_path: Path, argv: list[str], message: str,
                                       publisher_key: nacl.signing.SigningKey) -> None:
    keyfile = tmp_path / "pub.key"
    _write_key(keyfile, publisher_key)
    (tmp_path / "store" / "flists").mkdir(parents=True)
    args = {"--hub": "http://127.0.0.1:9", "--key": str(keyfile),
            "--store": str(tmp_path / "store")}
    args.update(dict(zip(argv[::2], argv[1::2], strict=True)))
    out = subprocess.run([sys.executable, "-m", "zosnode", "hub", "push",
                          *[x for kv in args.items() for x in kv]],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_each_route_takes_only_the_body_it_needs(live_hub: LiveHub,
                                                 publisher_key: nacl.signing.SigningKey) -> None:
    # A root is at most 64 KiB, a heartbeat 64 KiB; GETs take no body.
    big = os.urandom(200_000)
    assert send(live_hub, "PUT", "/roots/1.root", big, publisher_key)[0] == 413
    assert send(live_hub, "POST", "/api/v1/heartbeat", big, None)[0] == 413
    assert send(live_hub, "GET", "/api/v1/channels", b"x" * 10, None)[0] == 413
    assert send(live_hub, "GET", "/api/v1/channels", b"", None)[0] == 200


def test_tags_name_only_present_flists(live_hub: LiveHub, data_dir: Path, tmp_path: Path,
                                       publisher_key: nacl.signing.SigningKey) -> None:
    image = make_image(tmp_path)
    body = f"{image.flist_id}\n".encode()
    status, out, _ = send(live_hub, "PUT", "/tags/base", body, publisher_key)
    assert status == 422 and b"missing-flists" in out
    for bad in (image.flist_id.encode(), b"x" * 65):
        status, out, _ = send(live_hub, "PUT", "/tags/base", bad, publisher_key)
        assert status == 422 and b"bad-tag" in out
    # Over the 65 bytes a tag can be: refused before the body is read.
    assert send(live_hub, "PUT", "/tags/base", body + b"\n", publisher_key)[0] == 413
    # Not a tag path: no route takes a body there, refused before reading it.
    assert send(live_hub, "PUT", "/tags/../x", body, publisher_key)[0] == 413
    trio.run(lambda: push(str(image.store.path), live_hub.url, publisher_key))
    assert send(live_hub, "PUT", "/tags/base", body, publisher_key)[0] == 201
    status, out, _ = send(live_hub, "GET", "/tags/base", b"", None)
    assert status == 200 and out == body
    status, out, _ = send(live_hub, "GET", "/api/v1/tags", b"", None)
    assert status == 200 and json.loads(out) == {"tags": {"base": image.flist_id}}
