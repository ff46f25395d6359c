"""The hub's HTTP/1.1 behaviour, checked with real clients on loopback."""

from __future__ import annotations

import http.client
import socket
import subprocess
import time
from pathlib import Path

import h11
import pytest

from tests.hub.conftest import LiveHub, put_block, start_hub
from zosnode.http.server import Limits
from zosnode.hub.storage import LocalStorage

CURL = ["curl", "-sS", "--max-time", "20"]


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*CURL, *args], capture_output=True, check=True, timeout=30)


def headers_of(raw: bytes) -> tuple[int, dict[str, str]]:
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    out = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip().lower()] = v.strip()
    return status, out


def test_curl_get_block_is_identical_and_immutable(
        live_hub: LiveHub, small_block: tuple[str, bytes], tmp_path: Path) -> None:
    b, data = small_block
    hdr = tmp_path / "h"
    body = curl("-D", str(hdr), f"{live_hub.url}/blocks/{b[:2]}/{b}").stdout
    assert body == data
    status, h = headers_of(hdr.read_bytes())
    assert status == 200
    assert h["content-length"] == str(len(data))
    assert h["etag"] == f'"{b}"'
    assert "immutable" in h["cache-control"]


def test_curl_head_has_length_and_no_body(
        live_hub: LiveHub, big_block: tuple[str, bytes]) -> None:
    b, data = big_block
    out = curl("-I", f"{live_hub.url}/blocks/{b[:2]}/{b}").stdout
    status, h = headers_of(out)
    assert status == 200 and h["content-length"] == str(len(data))
    assert out.endswith(b"\r\n\r\n")


@pytest.mark.parametrize("which", ["small", "big"])
def test_curl_ranges(live_hub: LiveHub, small_block: tuple[str, bytes],
                     big_block: tuple[str, bytes], which: str, tmp_path: Path) -> None:
    b, data = small_block if which == "small" else big_block
    url = f"{live_hub.url}/blocks/{b[:2]}/{b}"
    hdr = tmp_path / "h"
    for spec, start, end in [("0-9", 0, 9), ("100-", 100, len(data) - 1),
                             ("-50", len(data) - 50, len(data) - 1),
                             (f"10-{len(data) + 99}", 10, len(data) - 1)]:
        got = curl("-D", str(hdr), "-r", spec, url).stdout
        status, h = headers_of(hdr.read_bytes())
        assert status == 206, spec
        assert got == data[start:end + 1], spec
        assert h["content-range"] == f"bytes {start}-{end}/{len(data)}"
        assert h["content-length"] == str(end - start + 1)
    out = curl("-D", str(hdr), "-r", f"{len(data)}-", url).stdout
    status, h = headers_of(hdr.read_bytes())
    assert status == 416 and h["content-range"] == f"bytes */{len(data)}" and out == b""


def test_curl_conditional_get(live_hub: LiveHub, small_block: tuple[str, bytes],
                              tmp_path: Path) -> None:
    b, _ = small_block
    url = f"{live_hub.url}/blocks/{b[:2]}/{b}"
    hdr = tmp_path / "h"
    out = curl("-D", str(hdr), "-H", f'If-None-Match: "{b}"', url).stdout
    status, h = headers_of(hdr.read_bytes())
    assert status == 304 and out == b"" and h["etag"] == f'"{b}"'
    out = curl("-D", str(hdr), "-H", 'If-None-Match: "other", W/"' + b + '"', url).stdout
    assert headers_of(hdr.read_bytes())[0] == 304
    out = curl("-D", str(hdr), "-H", 'If-None-Match: "other"', url).stdout
    assert headers_of(hdr.read_bytes())[0] == 200 and len(out) == 4096


def test_channel_manifest_is_revalidated(live_hub: LiveHub, data_dir: Path) -> None:
    (data_dir / "channels" / "stable").mkdir()
    (data_dir / "channels" / "stable" / "manifest").write_bytes(b"v1 bytes")
    conn = http.client.HTTPConnection(live_hub.host, live_hub.port, timeout=10)
    conn.request("GET", "/channels/stable/manifest")
    r = conn.getresponse()
    assert r.read() == b"v1 bytes" and r.getheader("cache-control") == "no-cache"
    etag = r.getheader("etag")
    conn.request("GET", "/channels/stable/manifest", headers={"If-None-Match": etag or ""})
    r = conn.getresponse()
    assert r.status == 304 and r.read() == b""
    (data_dir / "channels" / "stable" / "manifest").write_bytes(b"v2 bytes")
    conn.request("GET", "/channels/stable/manifest", headers={"If-None-Match": etag or ""})
    r = conn.getresponse()
    assert r.status == 200 and r.read() == b"v2 bytes"


def test_http_client_keep_alive_reuses_one_connection(
        live_hub: LiveHub, small_block: tuple[str, bytes], big_block: tuple[str, bytes]) -> None:
    conn = http.client.HTTPConnection(live_hub.host, live_hub.port, timeout=10)
    sockets = set()
    for b, data in [small_block, big_block, small_block, big_block]:
        conn.request("GET", f"/blocks/{b[:2]}/{b}")
        r = conn.getresponse()
        assert r.status == 200 and r.read() == data
        sockets.add(id(conn.sock))
    conn.request("HEAD", f"/blocks/{small_block[0][:2]}/{small_block[0]}")
    r = conn.getresponse()
    assert r.status == 200 and r.read() == b""
    conn.request("GET", "/blocks/00/" + "0" * 64)
    assert conn.getresponse().status == 404
    assert len(sockets) == 1
    conn.close()


def _raw(live: LiveHub, data: bytes, read_until_close: bool = True) -> bytes:
    with socket.create_connection((live.host, live.port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
            if not read_until_close and out.count(b"HTTP/1.1") >= 3:
                return out


def _responses(raw: bytes) -> list[tuple[int, bytes]]:
    conn = h11.Connection(h11.CLIENT)
    out: list[tuple[int, bytes]] = []
    conn.receive_data(raw)
    conn.receive_data(b"")
    status, body = 0, b""
    while True:
        # Pretend we sent one GET per response so h11 frames them.
        if conn.our_state is h11.IDLE:
            conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
            conn.send(h11.EndOfMessage())
        ev = conn.next_event()
        if isinstance(ev, h11.Response):
            status, body = ev.status_code, b""
        elif isinstance(ev, h11.Data):
            body += ev.data
        elif isinstance(ev, h11.EndOfMessage):
            out.append((status, body))
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return out
            conn.start_next_cycle()
        else:
            return out


def test_pipelined_requests_answered_in_order(live_hub: LiveHub, data_dir: Path) -> None:
    blobs = [bytes([i]) * (1000 + i) for i in range(3)]
    ids = [put_block(data_dir, b) for b in blobs]
    req = b"".join(f"GET /blocks/{b[:2]}/{b} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                   for b in ids)
    req += b"GET /blocks/00/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    got = _responses(_raw(live_hub, req))
    assert [s for s, _ in got] == [200, 200, 200, 404]
    assert [b for _, b in got[:3]] == blobs


@pytest.mark.parametrize("request_bytes", [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
])
def test_malformed_request_gets_400_and_close(live_hub: LiveHub, request_bytes: bytes) -> None:
    raw = _raw(live_hub, request_bytes + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400 ")
    assert raw.count(b"HTTP/1.1 ") == 1  # nothing after: the connection closed
    assert b"connection: close" in raw.lower()


def test_oversize_headers_get_431(live_hub: LiveHub) -> None:
    big = b"X-Fill: " + b"a" * 10_000 + b"\r\n"
    raw = _raw(live_hub, b"GET / HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
    assert raw.startswith(b"HTTP/1.1 431 ")


def test_oversize_body_gets_413(live_hub: LiveHub) -> None:
    raw = _raw(live_hub, b"PUT /blocks/00/" + b"0" * 64
               + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\nabc")
    assert raw.startswith(b"HTTP/1.1 413 ")


def test_unknown_paths_and_methods(live_hub: LiveHub) -> None:
    conn = http.client.HTTPConnection(live_hub.host, live_hub.port, timeout=10)
    for method, path, status in [
        ("GET", "/../etc/passwd", 404), ("GET", "/blocks/ab/../../x", 404),
        ("GET", "/flists/" + "A" * 64, 404), ("GET", "/roots/01.root", 404),
        ("DELETE", "/flists/" + "a" * 64, 405), ("POST", "/api/v1/nodes", 405),
        ("GET", "/api/v1/heartbeat", 405), ("GET", "/nope", 404),
    ]:
        conn.request(method, path)
        r = conn.getresponse()
        r.read()
        assert r.status == status, (method, path)


def test_slowloris_and_idle_cut_over_real_tcp(data_dir: Path) -> None:
    # The same deadlines as the mock-clock tests, on a real socket and clock,
    # kept short: a head must be complete 1 s after its first byte, an idle
    # connection goes after 1.5 s.
    live, stop = start_hub(LocalStorage(str(data_dir)),
                           limits=Limits(head_timeout_s=1.0, idle_timeout_s=1.5))
    try:
        with socket.create_connection((live.host, live.port), timeout=10) as s:
            start = time.monotonic()
            s.sendall(b"GET / HTTP/1.1\r\n")
            got = b""
            for _ in range(40):  # drip a header byte every 0.1 s
                try:
                    s.sendall(b"X")
                except OSError:
                    break
                time.sleep(0.1)
                s.setblocking(False)
                try:
                    got += s.recv(4096)
                except BlockingIOError:
                    pass
                finally:
                    s.setblocking(True)
                if got:
                    break
            assert got.startswith(b"HTTP/1.1 408 ")
            assert 0.9 < time.monotonic() - start < 2.5
        with socket.create_connection((live.host, live.port), timeout=10) as s:
            start = time.monotonic()
            assert s.recv(4096) == b""  # closed by the server, silently
            assert 1.4 < time.monotonic() - start < 3.0
    finally:
        stop()
