"""The trio + h11 client against real HTTP servers on loopback."""

from __future__ import annotations

import contextlib
import shutil
import ssl
import subprocess
from contextlib import aclosing
from functools import partial
from pathlib import Path

import pytest
import trio

from tests.lab.faulty_mirror import Fault, FaultyMirror
from tests.lab.nginx import nginx
from zosnode.http.client import (
    HttpClient,
    HttpOversize,
    HttpPeerError,
    HttpStatusError,
    HttpTimeout,
    HttpTruncated,
    Origin,
    Timeouts,
    _Conn,
    split_url,
)
from zosnode.http.command import ToolClient, base_url, run_request
from zosnode.http.errors import HttpUsageError


def test_split_url() -> None:
    origin, target = split_url("http://127.0.0.1:8080/blocks/ab/cd?x=1")
    assert (origin.host, origin.port, target) == ("127.0.0.1", 8080, "/blocks/ab/cd?x=1")
    assert split_url("https://[::1]/")[0].host_header == "[::1]"
    for bad in ("ftp://x/", "http:///nohost", "http://x:99999/", "nonsense"):
        with pytest.raises(HttpUsageError):
            split_url(bad)


def _path(bid: str) -> str:
    return f"blocks/{bid[:2]}/{bid}"


async def test_get_and_keepalive_reuse(mirror: FaultyMirror, blobs: dict[str, bytes]) -> None:
    async with aclosing(HttpClient()) as client:
        for bid, data in blobs.items():
            resp = await client.get(f"{mirror.url}/{_path(bid)}", max_size=len(data))
            assert resp.body == data and resp.status == 200
        # One origin, sequential requests: a single pooled connection served all.
        assert sum(len(v) for v in client._idle.values()) == 1


async def test_range_request(mirror: FaultyMirror, blobs: dict[str, bytes]) -> None:
    bid, data = max(blobs.items(), key=lambda kv: len(kv[1]))
    async with aclosing(HttpClient()) as client:
        resp = await client.get(f"{mirror.url}/{_path(bid)}", max_size=100, byte_range=(10, 109))
    assert resp.status == 206 and resp.body == data[10:110]


async def test_oversize_refused_before_body(mirror: FaultyMirror, blobs: dict[str, bytes]) -> None:
    bid, data = max(blobs.items(), key=lambda kv: len(kv[1]))
    async with aclosing(HttpClient()) as client:
        with pytest.raises(HttpOversize):
            await client.get(f"{mirror.url}/{_path(bid)}", max_size=len(data) - 1)


async def test_status_error(mirror: FaultyMirror) -> None:
    async with aclosing(HttpClient()) as client:
        with pytest.raises(HttpStatusError) as info:
            await client.get(f"{mirror.url}/blocks/00/none", max_size=10)
    assert info.value.status == 404


async def test_truncated_body_keeps_what_came(
    mirror: FaultyMirror, blobs: dict[str, bytes]
) -> None:
    bid, data = max(blobs.items(), key=lambda kv: len(kv[1]))
    mirror.fail(_path(bid), Fault.TRUNCATE)
    async with aclosing(HttpClient()) as client:
        with pytest.raises(HttpTruncated) as info:
            await client.get(f"{mirror.url}/{_path(bid)}", max_size=len(data))
    assert info.value.expected == len(data)
    assert data.startswith(info.value.received) and len(info.value.received) < len(data)


async def test_stall_before_head_times_out(
    mirror: FaultyMirror, blobs: dict[str, bytes], autojump_clock: trio.testing.MockClock
) -> None:
    bid = next(iter(blobs))
    mirror.fail(_path(bid), Fault.STALL_HEAD)
    async with aclosing(HttpClient(timeouts=Timeouts(head=3.0))) as client:
        start = trio.current_time()
        with pytest.raises(HttpTimeout):
            await client.get(f"{mirror.url}/{_path(bid)}", max_size=1 << 20)
        assert 3.0 <= trio.current_time() - start < 4.0


async def test_stall_mid_body_times_out(
    mirror: FaultyMirror, blobs: dict[str, bytes], autojump_clock: trio.testing.MockClock
) -> None:
    bid, data = max(blobs.items(), key=lambda kv: len(kv[1]))
    mirror.fail(_path(bid), Fault.STALL_BODY)
    async with aclosing(HttpClient(timeouts=Timeouts(body_idle=2.0))) as client:
        with pytest.raises(HttpTruncated):
            await client.get(f"{mirror.url}/{_path(bid)}", max_size=len(data))


async def test_connection_refused_is_peer_error(mirror: FaultyMirror) -> None:
    await mirror.stop()
    async with aclosing(HttpClient()) as client:
        with pytest.raises(HttpPeerError):
            await client.get(f"{mirror.url}/x", max_size=10)


async def test_pooled_connection_closed_by_server_is_retried(
    mirror: FaultyMirror, blobs: dict[str, bytes]
) -> None:
    bid, data = next(iter(blobs.items()))
    async with aclosing(HttpClient()) as client:
        await client.get(f"{mirror.url}/{_path(bid)}", max_size=len(data))
        await mirror.stop()  # closes the idle keep-alive connection server side
        await mirror.restart()
        resp = await client.get(f"{mirror.url}/{_path(bid)}", max_size=len(data))
    assert resp.body == data


async def test_parallel_requests_are_bounded(
    mirror: FaultyMirror, blobs: dict[str, bytes]
) -> None:
    async with aclosing(HttpClient(per_origin=2)) as client:
        async with trio.open_nursery() as nursery:
            for bid, data in blobs.items():
                nursery.start_soon(partial(client.get, f"{mirror.url}/{_path(bid)}",
                                           max_size=len(data)))
        assert sum(len(v) for v in client._idle.values()) <= 2


async def test_against_nginx(tmp_path: Path, data_dir: Path, blobs: dict[str, bytes]) -> None:
    with nginx(data_dir, tmp_path / "nginx") as server:
        async with aclosing(HttpClient()) as client:
            for bid, data in blobs.items():
                resp = await client.get(f"{server.url}/{_path(bid)}", max_size=len(data))
                assert resp.body == data
            bid, data = max(blobs.items(), key=lambda kv: len(kv[1]))
            part = await client.get(
                f"{server.url}/{_path(bid)}", max_size=len(data), byte_range=(5, len(data) + 99)
            )
            assert part.body == data[5:]


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
         "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


async def test_https_verified_and_wrong_ca_refused(
    tmp_path: Path, data_dir: Path, blobs: dict[str, bytes]
) -> None:
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    bid, data = next(iter(blobs.items()))
    async with trio.open_nursery() as nursery:
        m = FaultyMirror(data_dir, tls=server_ctx)
        await m.start(nursery)
        assert m.url.startswith("https://")
        trusted = ssl.create_default_context(cafile=str(cert))
        async with aclosing(HttpClient(ssl_context=trusted)) as client:
            for _ in range(2):  # the second request reuses the TLS connection
                resp = await client.get(f"{m.url}/{_path(bid)}", max_size=len(data))
                assert resp.body == data
        async with aclosing(HttpClient()) as client:  # system CAs: the self-signed cert is refused
            with pytest.raises(HttpPeerError):
                await client.get(f"{m.url}/{_path(bid)}", max_size=len(data))
        nursery.cancel_scope.cancel()


# -- what the hub's tools need: any method and status, bodies, a blocking call ----------


def test_base_url() -> None:
    assert base_url("http://hub:8080/prefix/") == "http://hub:8080/prefix"
    assert base_url("https://[::1]") == "https://[::1]"
    for bad in ("ftp://x", "http://", "hub:8080", "http://x/?q=1", "http://x/#f",
                "http://user:pw@x/", "http://x:99999"):
        with pytest.raises(HttpUsageError, match="is not an http://HOST"):
            base_url(bad)


async def test_request_any_method_and_status(
    mirror: FaultyMirror, blobs: dict[str, bytes]
) -> None:
    bid, data = max(blobs.items(), key=lambda kv: len(kv[1]))
    async with aclosing(ToolClient()) as client:
        # Every status is an answer unless `ok` says otherwise.
        missing = await client.request("GET", f"{mirror.url}/blocks/00/none", max_size=100)
        assert missing.status == 404
        with pytest.raises(HttpStatusError):
            await client.request("GET", f"{mirror.url}/blocks/00/none", max_size=100, ok=(200,))
        # A PUT's body goes out whole (the mirror reads it, then refuses the method),
        # and the connection is reused after.
        put = await client.request("PUT", f"{mirror.url}/x", body=data, max_size=100)
        assert put.status == 404
        head = await client.request("HEAD", f"{mirror.url}/{_path(bid)}", max_size=0)
        assert head.body == b""
        got = await client.request("GET", f"{mirror.url}/{_path(bid)}", max_size=len(data))
        assert got.body == data
        assert sum(len(v) for v in client._idle.values()) == 1
        with pytest.raises(HttpUsageError):
            await client.request("get x", f"{mirror.url}/", max_size=1)


async def test_a_peer_that_stops_reading_a_request_body_is_a_stall(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def never_reads(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, never_reads, 0,
                                                host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        async with aclosing(ToolClient(timeouts=Timeouts(body_idle=1.0, head=60.0))) as client:
            start = trio.current_time()
            # More than loopback's socket buffers can hold.
            with pytest.raises(HttpTimeout, match="took no bytes"):
                await client.request("PUT", f"http://127.0.0.1:{port}/x",
                                     body=bytes(64 * 1024 * 1024), max_size=100)
            assert trio.current_time() - start < 2.0
        nursery.cancel_scope.cancel()


def test_run_request_is_the_blocking_form(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"hello")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            m = FaultyMirror(tmp_path)
            await m.start(nursery)
            url = f"{m.url}/f"
            reply = await trio.to_thread.run_sync(partial(run_request, "GET", url, max_size=10))
            assert (reply.status, reply.body) == (200, b"hello")
            nursery.cancel_scope.cancel()

    trio.run(main)


async def _scripted(answers: list[bytes], accepted: list[int],
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """A loopback server answering each request head, in turn, with the next of
    `answers`, whatever connection it comes on; counts the connections."""
    async def handle(stream: trio.SocketStream) -> None:
        accepted.append(1)
        buf = b""
        while answers:
            while b"\r\n\r\n" not in buf:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                buf += chunk
            buf = buf.split(b"\r\n\r\n", 1)[1]
            await stream.send_all(answers.pop(0))
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)


@pytest.mark.parametrize("second, reused", [
    (b"", True),  # keep-alive: the second request rides the same connection
    (b"Connection: close\r\n", False),
])
async def test_a_sized_body_read_past_h11_leaves_the_connection_as_the_response_says(
        second: bytes, reused: bool) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB: read in several receives, past h11
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(body)
    answers = [head + second + b"\r\n" + body, head + b"\r\n" + body]
    accepted: list[int] = []
    async with trio.open_nursery() as nursery:
        port = await nursery.start(_scripted, answers, accepted)
        async with aclosing(HttpClient()) as client:
            for _ in range(2):
                reply = await client.get(f"http://127.0.0.1:{port}/b", max_size=len(body))
                assert reply.body == body
        nursery.cancel_scope.cancel()
    assert len(accepted) == (1 if reused else 2)


async def test_bytes_past_a_sized_body_close_the_connection() -> None:
    answers = [b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcEXTRA",
               b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nxyz"]
    accepted: list[int] = []
    async with trio.open_nursery() as nursery:
        port = await nursery.start(_scripted, answers, accepted)
        async with aclosing(HttpClient()) as client:
            assert (await client.get(f"http://127.0.0.1:{port}/a", max_size=3)).body == b"abc"
            assert not any(client._idle.values())  # not pooled: bytes past its body
            assert (await client.get(f"http://127.0.0.1:{port}/b", max_size=3)).body == b"xyz"
        nursery.cancel_scope.cancel()
    assert len(accepted) == 2


async def _answered_in_pieces(response: bytes, sizes: list[int]) -> bytes | HttpPeerError:
    """A GET answered with `response` sent in pieces of `sizes` (the last size repeats)."""
    async def serve(stream: trio.abc.Stream) -> None:
        await stream.receive_some(65536)
        pos, i = 0, 0
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while pos < len(response):  # the client may hang up first (a refused head)
                n = sizes[min(i, len(sizes) - 1)]
                await stream.send_all(response[pos:pos + n])
                pos, i = pos + n, i + 1
                await trio.sleep(0)  # each piece its own receive

    class Piecewise(HttpClient):
        async def _connect(self, origin: Origin, timeouts: Timeouts) -> _Conn:
            mine, theirs = trio.testing.memory_stream_pair()
            nursery.start_soon(serve, theirs)
            return _Conn(mine)

    async with trio.open_nursery() as nursery:
        try:
            return (await Piecewise().get("http://hub.test/b", max_size=1 << 20)).body
        except HttpPeerError as exc:
            return exc


BODY = bytes(range(256)) * 160  # 40 KiB: more than a head may be
PAD = b"X-Pad: " + b"p" * 15000 + b"\r\n"  # a head near h11's 16 KiB cap
EARLY = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n" + PAD + b"\r\n"


@pytest.mark.parametrize("sizes", [[1 << 20], [97], [7 * 1024], [16383, 1, 1, 1 << 20], [16385],
                                   [15020, 3, 40000]])
@pytest.mark.parametrize("early", [b"", EARLY], ids=["final head only", "after a 1xx"])
async def test_a_body_is_whole_however_the_head_and_body_arrive(
        sizes: list[int], early: bytes) -> None:
    response = early + b"HTTP/1.1 200 OK\r\n" + PAD + b"Content-Length: %d\r\n\r\n" % len(BODY)
    assert await _answered_in_pieces(response + BODY, sizes) == BODY


@pytest.mark.parametrize("sizes", [[1 << 20], [97], [9000]])
async def test_a_doubled_length_is_refused_where_the_head_spans_pieces(sizes: list[int]) -> None:
    # The final head starts ~15 KiB in: with [9000] it spans two receives.
    response = EARLY + (b"HTTP/1.1 200 OK\r\n" + b"X-A: " + b"a" * 2000 + b"\r\n"
                        b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello")
    got = await _answered_in_pieces(response, sizes)
    assert isinstance(got, HttpPeerError) and "several Content-Length" in str(got)
