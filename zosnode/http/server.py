"""An HTTP/1.1 server: h11 for the protocol, trio for the I/O, hard limits.

The handler is `async (Request) -> Response`; everything a well-behaved
HTTP/1.1 server owes its clients beyond that is done here once: keep-alive
and pipelining (h11), HEAD, conditional GET and byte ranges
(`zosnode.http.semantics`), framing, and the limits that keep the server up
under abuse:

- a request head must be complete `head_timeout_s` after its first byte
  arrives (slowloris) and must fit in `max_header_bytes` (431);
- an idle keep-alive connection is closed after `idle_timeout_s`;
- a body must fit in `max_body_bytes` and in the route's own cap
  (`body_limit`, asked with the request head) (413) and arrive within
  `body_timeout_s`; each write must progress within `send_timeout_s`;
- bodies over `large_body_bytes` are held by at most `max_large_bodies`
  requests at once (the others wait, within their body deadline), so total
  body memory is bounded, not only memory per connection;
- at most `max_connections` are served; the next ones get a short 503;
- memory per connection is bounded by the header and body caps: file bodies
  are streamed from disk, never loaded whole.

`shutdown()` is graceful: no new connections, idle ones are closed, requests
in flight finish (up to `shutdown_grace_s`) and their connections close.
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import h11
import trio

from zosnode.http import semantics
from zosnode.http.messages import FileBody, Request, Response, text_response

Handler = Callable[[Request], Awaitable[Response]]
# Called after each exchange: the request (None if it never parsed), the
# response as sent, and the body bytes written.
Observer = Callable[[Request | None, Response, int], None]
Logger = Callable[[str], None]
# The largest body a request may carry, decided from its head (method, path).
BodyLimit = Callable[[Request], int]

_RECV = 64 * 1024
_CHUNK = 256 * 1024
_SERVER = "zosnode"


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 64 * 1024 * 1024
    large_body_bytes: int = 1024 * 1024
    max_large_bodies: int = 16
    max_connections: int = 4096
    idle_timeout_s: float = 30.0
    head_timeout_s: float = 10.0
    body_timeout_s: float = 120.0
    send_timeout_s: float = 30.0
    handler_timeout_s: float = 60.0
    shutdown_grace_s: float = 10.0

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not value > 0 or (isinstance(value, float) and math.isinf(value)):
                raise ValueError(f"limit {name} must be positive, got {value!r}")


class _Close(Exception):
    """End this connection now (after any response already queued)."""


class _Conn:
    def __init__(self) -> None:
        # Cancelled by shutdown() while the connection waits, idle, for a
        # request; None while a request is being served.
        self.idle_scope: trio.CancelScope | None = None


class _BodySlot:
    """This exchange's claim on one of the `max_large_bodies` slots."""

    held = False


class HttpServer:
    def __init__(
        self,
        handler: Handler,
        limits: Limits | None = None,
        *,
        observe: Observer | None = None,
        log: Logger | None = None,
        body_limit: BodyLimit | None = None,
    ) -> None:
        self._handler = handler
        self.limits = limits or Limits()
        self._body_limit = body_limit
        self._large_bodies = trio.CapacityLimiter(self.limits.max_large_bodies)
        self._observe = observe
        self._log = log or (lambda _msg: None)
        self._conns: set[_Conn] = set()
        self._rejecting = 0
        self._closing = False
        self._accept_scope: trio.CancelScope | None = None
        self._drained = trio.Event()

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    async def serve(
        self,
        listeners: Sequence[trio.SocketListener],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until `shutdown()` and the in-flight requests are done."""
        async with trio.open_nursery() as connections:
            with trio.CancelScope() as accept_scope:
                self._accept_scope = accept_scope
                if self._closing:
                    accept_scope.cancel()
                async with trio.open_nursery() as acceptors:
                    for listener in listeners:
                        acceptors.start_soon(self._accept_loop, listener, connections)
                    task_status.started()
            for listener in listeners:
                await trio.aclose_forcefully(listener)
            with trio.move_on_after(self.limits.shutdown_grace_s):
                if self._conns:
                    await self._drained.wait()
            connections.cancel_scope.cancel()

    def shutdown(self) -> None:
        """Stop accepting; let requests in flight finish; close idle connections."""
        self._closing = True
        if self._accept_scope is not None:
            self._accept_scope.cancel()
        for conn in self._conns:
            if conn.idle_scope is not None:
                conn.idle_scope.cancel()

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                # Out of descriptors or a peer that reset before accept:
                # back off briefly instead of spinning or dying.
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._log(f"accept: {exc}; pausing 100 ms")
                    await trio.sleep(0.1)
                continue
            if len(self._conns) >= self.limits.max_connections:
                if self._rejecting >= self.limits.max_connections:
                    await trio.aclose_forcefully(stream)
                else:
                    nursery.start_soon(self._reject, stream)
                continue
            # Registered here, not when the task first runs, so a burst of
            # accepts cannot overshoot max_connections.
            conn_state = _Conn()
            self._conns.add(conn_state)
            nursery.start_soon(self.handle_stream, stream, conn_state)

    async def _reject(self, stream: trio.abc.HalfCloseableStream) -> None:
        self._rejecting += 1
        try:
            resp = text_response(503, "too many connections", route="overload",
                                 headers=(("retry-after", "1"),))
            conn = h11.Connection(h11.SERVER)
            conn.receive_data(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            conn.next_event()
            data = _head_bytes(conn, resp, len(resp.body), close=True)
            assert isinstance(resp.body, bytes)
            data += conn.send(h11.Data(data=resp.body)) or b""
            data += conn.send(h11.EndOfMessage()) or b""
            with trio.move_on_after(1.0):
                await stream.send_all(data)
            self._record(None, resp, len(resp.body))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self._rejecting -= 1
            await trio.aclose_forcefully(stream)

    async def handle_stream(self, stream: trio.abc.HalfCloseableStream,
                            conn_state: _Conn | None = None) -> None:
        """Serve one connection to its end (also usable with in-memory streams)."""
        if conn_state is None:
            conn_state = _Conn()
            self._conns.add(conn_state)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes)
        graceful = False
        try:
            while True:
                await self._exchange(stream, conn, conn_state)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    graceful = conn.our_state in (h11.MUST_CLOSE, h11.DONE)
                    break
                conn.start_next_cycle()
        except _Close:
            graceful = True
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            pass
        except OSError as exc:
            self._log(f"connection error: {exc}")
        finally:
            try:
                if graceful:
                    await _linger_close(stream)
            finally:
                await trio.aclose_forcefully(stream)
                self._conns.discard(conn_state)
                if self._closing and not self._conns:
                    self._drained.set()

    async def _exchange(self, stream: trio.abc.HalfCloseableStream, conn: h11.Connection,
                        conn_state: _Conn) -> None:
        # One cancel scope per exchange; its deadline moves with the phase
        # (idle, head, body, handler, each send). Cancel scopes are a large
        # share of trio's per-request cost, so one is kept, not five.
        if self._closing:
            raise _Close
        slot = _BodySlot()
        try:
            await self._exchange_in(stream, conn, conn_state, ["idle"], slot)
        finally:
            if slot.held:
                self._large_bodies.release_on_behalf_of(slot)

    async def _exchange_in(self, stream: trio.abc.HalfCloseableStream, conn: h11.Connection,
                           conn_state: _Conn, phase: list[str], slot: _BodySlot) -> None:
        response: Response | None = None
        request: Request | None = None
        with trio.CancelScope(
                deadline=trio.current_time() + self.limits.idle_timeout_s) as scope:
            conn_state.idle_scope = scope
            request = await self._receive(stream, conn, conn_state, scope, phase, slot)
            phase[0] = "handler"
            scope.deadline = trio.current_time() + self.limits.handler_timeout_s
            try:
                response = await self._handler(request)
            except Exception as exc:  # noqa: BLE001 - one bad request must not kill the server
                self._log(f"handler error on {request.method} {request.path}: "
                          f"{type(exc).__name__}: {exc}")
                response = text_response(500, "internal error")
            response = semantics.apply(request, response)
            phase[0] = "send"
            await self._respond(stream, conn, request, response, scope)
        conn_state.idle_scope = None
        if not scope.cancelled_caught:
            return
        if phase[0] == "idle":
            raise _Close
        if phase[0] == "head":
            # Slowloris: a head that never completes. Say so and close.
            await self._send_error(stream, conn, None, 408, "request head too slow")
            raise _Close
        if phase[0] == "body":
            await self._send_error(stream, conn, request, 408, "request body too slow")
            raise _Close
        if phase[0] == "handler":
            await self._send_error(stream, conn, request, 503, "handler timed out")
            raise _Close
        raise trio.TooSlowError  # a send made no progress: drop the connection

    async def _receive(self, stream: trio.abc.HalfCloseableStream, conn: h11.Connection,
                       conn_state: _Conn, scope: trio.CancelScope,
                       phase: list[str], slot: _BodySlot) -> Request:
        """Read one request: head (idle, then a hard deadline from its first byte), body."""
        limits = self.limits
        event: Any
        try:
            while True:
                event = conn.next_event()
                if event is not h11.NEED_DATA:
                    break
                data = bytes(await stream.receive_some(_RECV))
                if data and phase[0] == "idle":
                    phase[0] = "head"
                    conn_state.idle_scope = None
                    scope.deadline = min(scope.deadline,
                                         trio.current_time() + limits.head_timeout_s)
                conn.receive_data(data)
        except h11.RemoteProtocolError as exc:
            conn_state.idle_scope = None
            await self._send_error(stream, conn, None, exc.error_status_hint, str(exc), scope)
            raise _Close from None
        conn_state.idle_scope = None
        if isinstance(event, h11.ConnectionClosed):
            raise _Close
        assert isinstance(event, h11.Request)
        phase[0] = "head"
        # h11 caps only a head still incomplete; one arriving in a single read
        # is measured here, so the cap holds however the bytes were split.
        head_size = len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers)
        if head_size > limits.max_header_bytes:
            await self._send_error(stream, conn, None, 431,
                                   f"request head over {limits.max_header_bytes} bytes", scope)
            raise _Close
        headers = tuple((k.decode("latin-1").lower(), v.decode("latin-1"))
                        for k, v in event.headers)
        head = Request(event.method.decode("ascii"), event.target.decode("latin-1"), headers)
        cap = limits.max_body_bytes
        if self._body_limit is not None:
            cap = min(cap, self._body_limit(head))
        length = head.header("content-length")
        if length is not None and int(length) > cap:
            await self._send_error(stream, conn, head, 413, f"body over {cap} bytes", scope)
            raise _Close
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            await self._send_error(stream, conn, head, exc.error_status_hint, str(exc), scope)
            raise _Close from None
        if isinstance(event, h11.EndOfMessage):
            return head  # no body: most requests (GET, HEAD)
        phase[0] = "body"
        scope.deadline = trio.current_time() + limits.body_timeout_s
        chunks: list[bytes] = []
        size = 0
        try:
            while not isinstance(event, h11.EndOfMessage):
                if event is h11.NEED_DATA:
                    if conn.they_are_waiting_for_100_continue:
                        await stream.send_all(conn.send(
                            h11.InformationalResponse(status_code=100, headers=[])) or b"")
                    conn.receive_data(bytes(await stream.receive_some(_RECV)))
                elif isinstance(event, h11.Data):
                    size += len(event.data)
                    if size > cap:
                        await self._send_error(stream, conn, head, 413,
                                               f"body over {cap} bytes", scope)
                        raise _Close
                    if size > limits.large_body_bytes and not slot.held:
                        await self._large_bodies.acquire_on_behalf_of(slot)
                        slot.held = True
                    chunks.append(bytes(event.data))
                else:
                    raise _Close  # ConnectionClosed mid-body: the client gave up
                event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            await self._send_error(stream, conn, head, exc.error_status_hint, str(exc), scope)
            raise _Close from None
        return Request(head.method, head.target, head.headers, b"".join(chunks))

    async def _send_error(self, stream: trio.abc.HalfCloseableStream, conn: h11.Connection,
                          request: Request | None, status: int, why: str,
                          scope: trio.CancelScope | None = None) -> None:
        """Best effort, within a second: the connection closes after it anyway."""
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        response = text_response(status, why.splitlines()[0][:200] if why else "error")
        try:
            with trio.CancelScope() as own:
                own.deadline = trio.current_time() + 1.0
                if scope is not None:
                    scope.deadline = own.deadline + 0.1
                await self._respond(stream, conn, request, response, own, close=True,
                                    send_timeout=1.0)
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
            pass

    async def _respond(self, stream: trio.abc.HalfCloseableStream, conn: h11.Connection,
                       request: Request | None, response: Response, scope: trio.CancelScope,
                       *, close: bool = False, send_timeout: float | None = None) -> None:
        timeout = send_timeout or self.limits.send_timeout_s
        body = response.body
        no_body = (request is not None and request.method == "HEAD") or response.status in (
            204, 304) or response.status < 200
        framed_len = len(body)
        out = _head_bytes(conn, response, framed_len, close=close or self._closing,
                          omit_length=response.status in (204, 304))
        sent = 0
        if no_body or framed_len == 0:
            out += conn.send(h11.EndOfMessage()) or b""
            await self._send(stream, out, scope, timeout)
        elif isinstance(body, bytes):
            out += conn.send(h11.Data(data=body)) or b""
            out += conn.send(h11.EndOfMessage()) or b""
            await self._send(stream, out, scope, timeout)
            sent = len(body)
        else:
            await self._send(stream, out, scope, timeout)
            sent = await self._send_file(stream, conn, body, scope, timeout)
            await self._send(stream, conn.send(h11.EndOfMessage()) or b"", scope, timeout)
        self._record(request, response, sent)

    async def _send_file(self, stream: trio.abc.HalfCloseableStream, conn: h11.Connection,
                         body: FileBody, scope: trio.CancelScope, timeout: float) -> int:
        # Opened by path when sent: a file replaced since is still whole,
        # because writers rename and never rewrite in place.
        fd = os.open(body.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            sock = getattr(stream, "socket", None)
            # With sendfile the kernel copies it all in one piece; without,
            # bounded chunks keep memory per connection small.
            step = body.length if sock is not None else _CHUNK
            done = 0
            while done < body.length:
                n = min(step, body.length - done)
                piece = body.slice(done, n)
                parts: list[Any] = conn.send_with_data_passthrough(
                    h11.Data(data=piece)  # type: ignore[arg-type]
                ) or []
                for part in parts:
                    if part is not piece:
                        await self._send(stream, bytes(part), scope, timeout)
                    elif sock is not None:
                        await _sendfile(sock, fd, piece, scope, timeout)
                    else:
                        await self._send(stream, _pread_exact(fd, piece), scope, timeout)
                done += n
            return done
        finally:
            os.close(fd)

    async def _send(self, stream: trio.abc.HalfCloseableStream, data: bytes,
                    scope: trio.CancelScope, timeout: float) -> None:
        # The deadline is per write: a reader that keeps taking bytes is
        # served, one that stops for `timeout` is cut.
        if data:
            scope.deadline = trio.current_time() + timeout
            await stream.send_all(data)

    def _record(self, request: Request | None, response: Response, sent: int) -> None:
        if self._observe is not None:
            self._observe(request, response, sent)


def _head_bytes(conn: h11.Connection, response: Response, length: int, *,
                close: bool, omit_length: bool = False) -> bytes:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    if not omit_length:
        headers.append((b"content-length", str(length).encode()))
    headers.append((b"server", _SERVER.encode()))
    if close:
        headers.append((b"connection", b"close"))
    try:
        reason = HTTPStatus(response.status).phrase.encode()
    except ValueError:
        reason = b""
    return conn.send(h11.Response(status_code=response.status, headers=headers,
                                  reason=reason)) or b""


async def _sendfile(sock: trio.socket.SocketType, fd: int, piece: FileBody,
                    scope: trio.CancelScope, timeout: float) -> None:
    offset, left = piece.offset, piece.length
    while left:
        try:
            n = os.sendfile(sock.fileno(), fd, offset, left)
        except BlockingIOError:
            scope.deadline = trio.current_time() + timeout
            await trio.lowlevel.wait_writable(sock)
            continue
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise trio.BrokenResourceError from exc
        if n == 0:
            raise OSError(f"{piece.path} shrank while being served")
        offset += n
        left -= n
    await trio.lowlevel.checkpoint()


def _pread_exact(fd: int, piece: FileBody) -> bytes:
    data = os.pread(fd, piece.length, piece.offset)
    if len(data) != piece.length:
        raise OSError(f"{piece.path} shrank while being served")
    return data


async def _linger_close(stream: trio.abc.HalfCloseableStream) -> None:
    # Half-close, then read what the client still sends for a moment: closing
    # with unread data makes the kernel send RST, which can destroy the error
    # response we just queued before the client reads it.
    with trio.move_on_after(0.5):
        try:
            await stream.send_eof()
            drained = 0
            while drained < 1 << 20:
                data = await stream.receive_some(_RECV)
                if not data:
                    break
                drained += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass


async def open_listeners(address: str) -> list[trio.SocketListener]:
    """Listeners for "HOST:PORT" or "[V6]:PORT" (port 0 picks a free one)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit():
        raise ValueError(f"listen address {address!r} is not HOST:PORT")
    return await trio.open_tcp_listeners(int(port), host=host, backlog=4096)
