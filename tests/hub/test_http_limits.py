"""Deadlines, caps and graceful shutdown, on trio's mock clock.

Connections are in-memory stream pairs handed to `HttpServer.handle_stream`,
so every timing below is exact and no test sleeps for real.
"""

from __future__ import annotations

import re
from pathlib import Path

import h11
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from zosnode.http.messages import FileBody, Request, Response
from zosnode.http.server import HttpServer, Limits

LIMITS = Limits(idle_timeout_s=30, head_timeout_s=10, body_timeout_s=20,
                handler_timeout_s=40, send_timeout_s=15, shutdown_grace_s=5,
                max_connections=2)


async def slow_handler(request: Request) -> Response:
    if request.path == "/slow":
        await trio.sleep(3)
    if request.path == "/hang":
        await trio.sleep(1000)
    return Response(200, (), b"done " + request.path.encode() + b" " + request.body)


async def read_all(stream: trio.abc.Stream) -> tuple[bytes, float]:
    """Everything the server sends until it closes; and the time it closed."""
    out = b""
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return out, trio.current_time()
        out += chunk


async def test_idle_connection_closed_at_idle_deadline(autojump_clock: trio.abc.Clock) -> None:
    server = HttpServer(slow_handler, LIMITS)
    client, conn = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handle_stream, conn)
        start = trio.current_time()
        out, closed = await read_all(client)
    assert out == b""
    assert closed - start == pytest.approx(30)


async def test_slowloris_cut_at_head_deadline(autojump_clock: trio.abc.Clock) -> None:
    server = HttpServer(slow_handler, LIMITS)
    client, conn = trio.testing.memory_stream_pair()
    result: list[tuple[bytes, float]] = []

    async def drip() -> None:
        # One header byte per second, forever: never a complete head.
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 1000:
            try:
                await client.send_all(bytes([byte]))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            await trio.sleep(1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handle_stream, conn)
        start = trio.current_time()
        nursery.start_soon(drip)
        result.append(await read_all(client))
        nursery.cancel_scope.cancel()
    out, closed = result[0]
    assert out.startswith(b"HTTP/1.1 408 ")
    assert closed - start == pytest.approx(10, abs=1.01)


async def test_idle_keepalive_after_a_request_is_cut(autojump_clock: trio.abc.Clock) -> None:
    server = HttpServer(slow_handler, LIMITS)
    client, conn = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handle_stream, conn)
        await client.send_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        sent = trio.current_time()
        out, closed = await read_all(client)
    assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"done /a ")
    assert closed - sent == pytest.approx(30)


async def test_slow_body_cut_at_body_deadline(autojump_clock: trio.abc.Clock) -> None:
    server = HttpServer(slow_handler, LIMITS)
    client, conn = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handle_stream, conn)
        await client.send_all(b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
        start = trio.current_time()
        out, closed = await read_all(client)
    assert out.startswith(b"HTTP/1.1 408 ")
    assert closed - start == pytest.approx(20)


async def test_handler_deadline_gives_503(autojump_clock: trio.abc.Clock) -> None:
    server = HttpServer(slow_handler, LIMITS)
    client, conn = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handle_stream, conn)
        await client.send_all(b"GET /hang HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        start = trio.current_time()
        out, closed = await read_all(client)
    assert out.startswith(b"HTTP/1.1 503 ")
    assert closed - start == pytest.approx(40)


async def test_reader_that_never_reads_is_cut_at_send_deadline(
        autojump_clock: trio.abc.Clock) -> None:
    big = b"x" * (4 * 1024 * 1024)

    async def handler(request: Request) -> Response:
        return Response(200, (), big)

    server = HttpServer(handler, LIMITS)
    client, conn = trio.testing.lockstep_stream_pair()
    async with trio.open_nursery() as nursery:
        done = trio.Event()

        async def serve() -> None:
            await server.handle_stream(conn)
            done.set()

        nursery.start_soon(serve)
        await client.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        start = trio.current_time()
        await done.wait()  # we never read: the server must give up on its own
    assert trio.current_time() - start == pytest.approx(15)


async def test_graceful_shutdown_finishes_in_flight_requests(
        autojump_clock: trio.abc.Clock) -> None:
    server = HttpServer(slow_handler, Limits(shutdown_grace_s=10))
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    results: dict[str, bytes] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, listeners)
        busy = await trio.open_tcp_stream("127.0.0.1", port)
        idle = await trio.open_tcp_stream("127.0.0.1", port)
        await busy.send_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await trio.sleep(1)  # /slow is now in its handler
        assert server.open_connections == 2
        server.shutdown()

        async def collect(name: str, stream: trio.SocketStream) -> None:
            results[name] = (await read_all(stream))[0]

        nursery.start_soon(collect, "busy", busy)
        nursery.start_soon(collect, "idle", idle)
    assert results["idle"] == b""
    assert results["busy"].startswith(b"HTTP/1.1 200 ")
    assert b"connection: close" in results["busy"]
    assert results["busy"].endswith(b"done /slow ")
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", port)


async def test_over_max_connections_get_503_and_others_still_served(
        autojump_clock: trio.abc.Clock) -> None:
    failures: list[str] = []
    server = HttpServer(slow_handler, LIMITS, on_failure=failures.append)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, listeners)
        # Both slots busy with a request in its handler: none idle to shed.
        held = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
        for s in held:
            await s.send_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await trio.sleep(0.5)
        extra = await trio.open_tcp_stream("127.0.0.1", port)
        out, _ = await read_all(extra)
        assert out.startswith(b"HTTP/1.1 503 ")
        assert failures == ["overload"]
        conn = h11.Connection(h11.CLIENT)
        conn.receive_data(await held[0].receive_some(65536))
        event = conn.next_event()
        assert isinstance(event, h11.Response) and event.status_code == 200
        for s in held:
            await s.aclose()
        server.shutdown()


async def test_when_full_the_longest_idle_connection_is_shed_for_a_new_one(
        autojump_clock: trio.abc.Clock) -> None:
    # Idle sockets must not lock clients out: at max_connections a new
    # connection takes the place of the one idle the longest; a busy one is
    # never shed.
    failures: list[str] = []
    server = HttpServer(slow_handler, LIMITS, on_failure=failures.append)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, listeners)
        oldest = await trio.open_tcp_stream("127.0.0.1", port)
        await trio.sleep(1)
        younger = await trio.open_tcp_stream("127.0.0.1", port)
        await trio.sleep(1)
        newcomer = await trio.open_tcp_stream("127.0.0.1", port)
        await newcomer.send_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out, _ = await read_all(newcomer)
        assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"done /ok ")
        assert (await read_all(oldest))[0] == b""  # shed, silently
        assert failures == ["shed-idle"]
        # The younger one was kept and still works.
        await younger.send_all(b"GET /still HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await read_all(younger))[0].endswith(b"done /still ")
        server.shutdown()


async def test_a_connection_idle_under_a_second_is_not_shed(
        autojump_clock: trio.abc.Clock) -> None:
    # A client pausing between two requests keeps its connection: the
    # newcomer gets the 503 instead.
    failures: list[str] = []
    server = HttpServer(slow_handler, LIMITS, on_failure=failures.append)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, listeners)
        held = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
        await trio.sleep(0.5)
        extra = await trio.open_tcp_stream("127.0.0.1", port)
        assert (await read_all(extra))[0].startswith(b"HTTP/1.1 503 ")
        assert failures == ["overload"]
        for s in held:
            await s.send_all(b"GET /kept HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert (await read_all(s))[0].endswith(b"done /kept ")
        server.shutdown()


async def test_stuck_reader_of_a_sendfile_body_is_cut(
        autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(b"y" * (32 * 1024 * 1024))  # far more than socket buffers hold

    async def handler(request: Request) -> Response:
        return Response(200, (), FileBody(str(path), 0, path.stat().st_size))

    server = HttpServer(handler, LIMITS)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, listeners)
        client = await trio.open_tcp_stream("127.0.0.1", port)
        await client.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        start = trio.current_time()
        while server.open_connections:
            await trio.sleep(0.5)
        assert trio.current_time() - start == pytest.approx(15, abs=1)
        await client.aclose()
        server.shutdown()


def _serve_bytes(chunks: list[bytes]) -> bytes:
    """Feed `chunks` to one server connection, then EOF; return all it sent."""

    async def main() -> bytes:
        server = HttpServer(slow_handler, LIMITS)
        client, conn = trio.testing.memory_stream_pair()
        out = b""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.handle_stream, conn)
            for chunk in chunks:
                await client.send_all(chunk)
            await client.send_eof()
            out = (await read_all(client))[0]
        return out

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_request_fed_byte_by_byte_and_with_trailing_data() -> None:
    req = b"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
    whole = _serve_bytes([req])
    assert whole.startswith(b"HTTP/1.1 200 ") and whole.endswith(b"done /x abc")
    assert _serve_bytes([bytes([b]) for b in req]) == whole
    # Trailing garbage after a complete request: the request is answered,
    # then the garbage gets a 400 and the connection closes.
    out = _serve_bytes([req + b"NOT HTTP\r\n\r\n"])
    assert out.startswith(whole) and out[len(whole):].startswith(b"HTTP/1.1 400 ")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash_the_server(data: bytes) -> None:
    out = _serve_bytes([data])
    # Whatever came in, what goes out is zero or more well-formed responses,
    # ending cleanly between two of them.
    conn = h11.Connection(h11.CLIENT)
    conn.receive_data(out)
    conn.receive_data(b"")
    mid_response = False
    while True:
        if conn.our_state is h11.IDLE:
            conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
            conn.send(h11.EndOfMessage())
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            assert not mid_response, out
            break
        if isinstance(event, h11.Response):
            mid_response = True
        elif isinstance(event, h11.EndOfMessage):
            mid_response = False
            if conn.their_state is not h11.DONE:
                break
            conn.start_next_cycle()
        elif isinstance(event, h11.ConnectionClosed):
            break
        else:
            assert event is not h11.NEED_DATA, out


async def test_large_bodies_take_turns(autojump_clock: trio.abc.Clock) -> None:
    # Two 2 MiB uploads, one large-body slot: the second body is not buffered
    # past 1 MiB until the first exchange is over, so total memory is bounded.
    seen: list[tuple[str, float]] = []

    async def handler(request: Request) -> Response:
        seen.append((request.path, trio.current_time()))
        await trio.sleep(5)
        return Response(200, (), b"ok")

    server = HttpServer(handler, Limits(max_large_bodies=1, body_timeout_s=60))
    body = b"z" * (2 * 1024 * 1024)
    pairs = [trio.testing.memory_stream_pair() for _ in range(2)]

    async def upload(i: int) -> None:
        client = pairs[i][0]
        await client.send_all(f"PUT /{i} HTTP/1.1\r\nHost: x\r\n"
                              f"Content-Length: {len(body)}\r\n\r\n".encode())
        await client.send_all(body)
        await client.send_eof()
        await read_all(client)

    async with trio.open_nursery() as nursery:
        for i in range(2):
            nursery.start_soon(server.handle_stream, pairs[i][1])
            nursery.start_soon(upload, i)
    assert [p for p, _ in seen] in (["/0", "/1"], ["/1", "/0"])
    assert seen[1][1] - seen[0][1] >= 5  # the second handler ran after the first's


async def _one_connection(server: HttpServer, data: bytes) -> list[int]:
    """Serve one in-memory connection that sends `data`; the statuses it got."""
    client, conn = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handle_stream, conn)  # must return, never raise
        await client.send_all(data)
        out, _ = await read_all(client)
        await client.aclose()
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", out)]


async def test_an_exception_on_a_connection_ends_only_it_counted_and_logged_once(
        autojump_clock: trio.abc.Clock) -> None:
    lines: list[str] = []
    failures: list[str] = []

    async def handler(request: Request) -> Response:
        if request.path == "/raise":
            raise RuntimeError("boom\nwith a second line")
        if request.path == "/not-a-response":
            return None  # type: ignore[return-value]  # a bug past the handler, in the server
        return Response(200, (), b"ok")

    server = HttpServer(handler, LIMITS, log=lines.append, on_failure=failures.append)
    after = b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"
    # Each error is a 500 and the connection closes: the request behind it
    # is not served. A healthy connection is served as before.
    assert await _one_connection(server, b"GET /raise HTTP/1.1\r\nHost: x\r\n\r\n" + after) \
        == [500]
    assert await _one_connection(server, b"GET /raise HTTP/1.1\r\nHost: x\r\n\r\n") == [500]
    assert await _one_connection(
        server, b"GET /not-a-response HTTP/1.1\r\nHost: x\r\n\r\n" + after) == [500]
    assert await _one_connection(server, after + after.replace(
        b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")) == [200, 200]
    assert failures == ["handler-error", "handler-error", "internal-error"]
    # One line each, the repeat within a second not logged but counted later.
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert "RuntimeError: boom\\nwith a second line" in lines[0]
    assert "internal-error" not in lines[1] and "AttributeError" in lines[1]
    await trio.sleep(2)
    assert await _one_connection(server, b"GET /raise HTTP/1.1\r\nHost: x\r\n\r\n") == [500]
    assert len(lines) == 3 and "(1 more like it" in lines[2]


async def test_broken_log_and_metrics_sinks_do_not_stop_the_server(
        autojump_clock: trio.abc.Clock) -> None:
    def broken(_: str) -> None:
        raise OSError("stderr is gone")

    async def handler(request: Request) -> Response:
        if request.path == "/raise":
            raise RuntimeError("boom")
        return Response(200, (), b"ok")

    server = HttpServer(handler, LIMITS, log=broken, on_failure=broken)
    assert await _one_connection(server, b"GET /raise HTTP/1.1\r\nHost: x\r\n\r\n") == [500]
    assert await _one_connection(server, b"GET //[ HTTP/1.1\r\nHost: x\r\n\r\n") == [400]
    assert await _one_connection(
        server, b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") == [200]
