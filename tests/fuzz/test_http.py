"""Fuzz targets `http-server` (the hub's request reader), `http-client` (the node's).

`http-server`: the bytes are what a client sends on one connection, handed to
`HttpServer.handle_stream` through trio's in-memory stream pair, then EOF,
on the mock clock (every deadline passes at once). Property: it returns, the
peer gets nothing or HTTP/1.1 responses, and every connection that ended
badly was counted under a peer-fault label: never `internal-error` or
`handler-error` (the handler here cannot fail), and nothing was logged
(the server logs only unexpected exceptions).

`http-client`: the bytes are a server's answer to one GET (or a ranged GET,
or a POST) from `HttpClient`. The seam is the client's `_connect`, which a
subclass points at an in-memory stream (the smallest one that needs no
socket). Property: a `Response` or an `HttpPeerError`, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import aclosing

import trio
import trio.testing
from hypothesis import strategies as st

from tests.fuzz.budget import Target, fuzz, replay
from tests.fuzz.mutate import havoc, mutated
from zosnode.http import client as http_client
from zosnode.http.messages import Request, Response
from zosnode.http.server import FAILURE_LABELS, HttpServer, Limits

LIMITS = Limits(max_header_bytes=2048, max_body_bytes=4096, large_body_bytes=1024,
                max_large_bodies=2, max_connections=4)
_UNEXPECTED = {"internal-error", "handler-error"}


async def _handler(request: Request) -> Response:
    body = b"hello " + request.method.encode() + b" " + request.path.encode()[:50]
    return Response(200, (("etag", '"v1"'), ("last-modified", "Tue, 15 Nov 1994 08:12:31 GMT")),
                    body + b" " + request.body[:20], ranges=True)


async def _read_all(stream: trio.abc.ReceiveStream) -> bytes:
    out = bytearray()
    while True:
        try:
            chunk = await stream.receive_some(65536)
        except trio.BrokenResourceError:
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk


def _serve(data: bytes) -> tuple[bytes, list[str], list[str]]:
    """What the server sent back, the failure labels it counted, the lines it logged."""
    failures: list[str] = []
    logs: list[str] = []
    server = HttpServer(_handler, LIMITS, log=logs.append, on_failure=failures.append)
    sent: list[bytes] = []

    async def main() -> None:
        client, conn = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.handle_stream, conn)
            try:
                await client.send_all(data)
                await client.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            sent.append(await _read_all(client))

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return sent[0], failures, logs


def check_server(data: bytes) -> None:
    out, failures, logs = _serve(data)
    assert not out or out.startswith(b"HTTP/1.1 "), out[:80]
    assert set(failures) <= set(FAILURE_LABELS) - _UNEXPECTED, failures
    assert not logs, logs


class _Canned(http_client.HttpClient):
    """A client whose every connection is an in-memory stream to `serve`."""

    def __init__(self, serve: Callable[[trio.abc.HalfCloseableStream], object],
                 nursery: trio.Nursery) -> None:
        super().__init__(timeouts=http_client.Timeouts(connect=1, head=5, body_idle=2,
                                                        window_bytes=1))
        self._serve = serve
        self._nursery = nursery

    async def _connect(self, origin: http_client.Origin,
                       timeouts: http_client.Timeouts) -> http_client._Conn:
        mine, theirs = trio.testing.memory_stream_pair()
        self._nursery.start_soon(self._serve, theirs)  # type: ignore[arg-type]
        return http_client._Conn(mine)


def _fetch(data: bytes) -> list[http_client.Reply | http_client.HttpPeerError]:
    """The outcome of a GET, a ranged GET and a POST each answered with `data`."""
    outcomes: list[http_client.Reply | http_client.HttpPeerError] = []

    async def answer(stream: trio.abc.HalfCloseableStream) -> None:
        try:
            await stream.receive_some(65536)  # the request (small, one chunk)
            await stream.send_all(data)
            await stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            async with aclosing(_Canned(answer, nursery)) as client:
                for kind in ("get", "range", "post"):
                    try:
                        if kind == "get":
                            got = await client.get("http://hub.test/blocks/x", max_size=64)
                        elif kind == "range":
                            got = await client.get("http://hub.test/f", max_size=64,
                                                   byte_range=(2, 9))
                        else:
                            got = await client.post("http://hub.test/hb", b"beat", max_size=64)
                        outcomes.append(got)
                    except http_client.HttpPeerError as exc:
                        outcomes.append(exc)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return outcomes


def check_client(data: bytes) -> None:
    for outcome in _fetch(data):
        if isinstance(outcome, http_client.Reply):
            assert len(outcome.body) <= 64


SERVER = Target("http-server", check_server)
CLIENT = Target("http-client", check_client)

REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: hub\r\n\r\n",
    b"GET /a?b=c%20d HTTP/1.1\r\nHost: hub\r\nRange: bytes=1-3\r\n\r\n"
    b"HEAD /x HTTP/1.1\r\nHost: hub\r\nIf-None-Match: \"v1\"\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: hub\r\nContent-Length: 5\r\n\r\nhello"
    b"GET /next HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n",
    b"POST /c HTTP/1.1\r\nHost: hub\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n0\r\nTrailer-A: b\r\n\r\n",
    b"GET http://hub:80/abs HTTP/1.1\r\nHost: hub\r\nIf-Range: \"v1\"\r\n"
    b"Range: bytes=-2,0-0\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: hub\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"PUT /big HTTP/1.1\r\nHost: hub\r\nExpect: 100-continue\r\nContent-Length: 2000\r\n\r\n"
    + b"x" * 2000,
]
RESPONSES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 2-9/100\r\nContent-Length: 8\r\n"
    b"\r\n01234567",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nuntil the end",
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
]

test_http_server_regressions = replay(SERVER)
test_http_server_mutated = fuzz(SERVER, mutated(REQUESTS))
test_http_server_havoc = fuzz(SERVER, havoc(REQUESTS, per_example=8))
test_http_server_raw = fuzz(SERVER, st.binary(max_size=300))
test_http_client_regressions = replay(CLIENT)
test_http_client_havoc = fuzz(CLIENT, havoc(RESPONSES, per_example=8))
test_http_client_raw = fuzz(CLIENT, st.binary(max_size=200))


def test_seeds_are_served() -> None:
    # Seeds that only reached refusals would make the mutations shallow.
    for seed in REQUESTS:
        out, failures, _ = _serve(seed)
        assert out.startswith(b"HTTP/1.1 200 ") or out.startswith(b"HTTP/1.1 206 ") or \
            out.startswith(b"HTTP/1.1 304 ") or out.startswith(b"HTTP/1.1 100 "), out[:60]
        assert not failures, failures
    got = _fetch(RESPONSES[0])
    assert isinstance(got[0], http_client.Reply) and got[0].body == b"hello"
    got = _fetch(RESPONSES[1])
    assert isinstance(got[1], http_client.Reply) and got[1].body == b"01234567"
    got = _fetch(RESPONSES[2])
    assert isinstance(got[0], http_client.Reply) and got[0].body == b"abc"
