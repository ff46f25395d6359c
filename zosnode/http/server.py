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
- at most `max_connections` are served; when full, the connection idle the
  longest (for at least `_SHED_AFTER_S`) is shed to make room, and only when
  none is do new ones get a short 503 (so idle sockets cannot lock clients
  out, and clients between two requests are not churned);
- memory per connection is bounded by the header and body caps: file bodies
  are streamed from disk, never loaded whole.

No input from the network is fatal: whatever a connection sends, and
whatever goes wrong while serving it (a refused head, a library error, a bug
in a handler or here), ends that connection only, with a 4xx or 500 when a
response can still be sent; each such end is counted (`on_failure`, by a
bounded label) and unexpected exceptions are logged as one line. The strict
checks of the head and target that h11 does not make are in
`zosnode.http.requesthead`.

`shutdown()` is graceful: no new connections, idle ones are closed, requests
in flight finish (up to `shutdown_grace_s`) and their connections close.
"""

import errno
import math
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, NoReturn

import h11
import trio

from zosnode.http import semantics
from zosnode.http.messages import FileBody, Request, Response, text_response
from zosnode.http.requesthead import HttpRefused, check_head, head_end

Handler = Callable[[Request], Awaitable[Response]]
# Called after each exchange: the request (None if it never parsed), the
# response as sent, and the body bytes written.
Observer = Callable[[Request | None, Response, int], None]
Logger = Callable[[str], None]
# The largest body a request may carry, decided from its head (method, path).
BodyLimit = Callable[[Request], int]
# Called once for each connection refused or cut, with one of FAILURE_LABELS.
FailureCounter = Callable[[str], None]

# Every label `on_failure` may be called with (a bounded set, for metrics).
FAILURE_LABELS = (
    "bad-request",      # h11 refused the request's syntax (400)
    "bad-head",         # control bytes or obsolete line folding (400)
    "bad-framing",      # Content-Length/Transfer-Encoding smuggling signs (400)
    "bad-target",       # not origin-form, strict absolute-form or OPTIONS * (400)
    "unsupported",      # a transfer coding or HTTP version we do not serve (501, 505)
    "head-too-large",   # 431
    "body-too-large",   # 413
    "head-timeout",     # 408 (slowloris)
    "body-timeout",     # 408
    "handler-timeout",  # 503
    "handler-error",    # the handler raised: 500
    "internal-error",   # any other exception while serving the connection: 500
    "send-timeout",     # the client stopped reading
    "peer-reset",       # the client broke the connection mid-exchange
    "overload",         # max_connections reached, none idle: 503
    "shed-idle",        # an idle connection closed to make room for a new one
)
_H11_LABELS = {431: "head-too-large", 501: "unsupported", 413: "body-too-large"}

_RECV = 64 * 1024
_CHUNK = 256 * 1024
_SERVER = "zosnode"
_WARN_EVERY_S = 1.0
# An idle connection may be shed for a newcomer only once idle this long: a
# client pausing between two requests keeps its connection, a parked socket
# does not.
_SHED_AFTER_S = 1.0


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


class _Drop(Exception):
    """End this connection now, without lingering: nothing was sent on it."""


class _Conn:
    def __init__(self) -> None:
        # Cancelled by shutdown() or when shed while the connection waits,
        # idle, for a request; None while a request is being served.
        self.idle_scope: trio.CancelScope | None = None
        self.idle_since = 0.0
        self.shed = False


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
        on_failure: FailureCounter | None = None,
    ) -> None:
        self._handler = handler
        self.limits = limits or Limits()
        self._body_limit = body_limit
        self._large_bodies = trio.CapacityLimiter(self.limits.max_large_bodies)
        self._observe = observe
        self._log = log or (lambda _msg: None)
        self._on_failure = on_failure
        self._conns: set[_Conn] = set()
        # Connections waiting for a request, longest-idle first (dicts keep
        # insertion order): the ones shed when the server is full.
        self._idle: dict[_Conn, None] = {}
        self._rejecting = 0
        self._closing = False
        self._accept_scope: trio.CancelScope | None = None
        self._drained = trio.Event()
        self._warned: dict[str, float] = {}
        self._unwarned: dict[str, int] = {}

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
                # free a descriptor held by an idle connection, or back off
                # briefly, instead of spinning or dying.
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    if exc.errno in (errno.EMFILE, errno.ENFILE) and self._shed_idle():
                        await trio.sleep(0.01)
                    else:
                        self._warn("accept", f"accept: {exc}; pausing 100 ms")
                        await trio.sleep(0.1)
                continue
            if len(self._conns) >= self.limits.max_connections and not self._shed_idle():
                self._fail("overload")
                if self._rejecting >= self.limits.max_connections:
                    await trio.aclose_forcefully(stream)
                else:
                    nursery.start_soon(self._reject, stream)
                continue
            # Registered here, not when the task first runs, so a burst of
            # accepts cannot overshoot max_connections (beyond the shed
            # connections still closing: at most as many again).
            conn_state = _Conn()
            self._conns.add(conn_state)
            nursery.start_soon(self.handle_stream, stream, conn_state)

    def _shed_idle(self) -> bool:
        """Close the connection idle the longest, to make room; False if none may be."""
        victim = next(iter(self._idle), None)
        if victim is None or trio.current_time() - victim.idle_since < _SHED_AFTER_S:
            return False
        scope = victim.idle_scope
        self._idle_end(victim)
        victim.shed = True
        if scope is not None:
            scope.cancel()
        self._fail("shed-idle")
        return True

    def _idle_begin(self, conn_state: _Conn, scope: trio.CancelScope, now: float) -> None:
        conn_state.idle_scope = scope
        conn_state.idle_since = now
        self._idle[conn_state] = None

    def _idle_end(self, conn_state: _Conn) -> None:
        conn_state.idle_scope = None
        self._idle.pop(conn_state, None)

    async def _reject(self, stream: trio.abc.HalfCloseableStream) -> None:
        self._rejecting += 1
        try:
            resp = text_response(503, "too many connections", route="overload",
                                 headers=(("retry-after", "1"),))
            with trio.move_on_after(1.0):
                await stream.send_all(_standalone(resp))
            self._record(None, resp, len(resp.body))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except Exception as exc:  # noqa: BLE001 - no input from the network may stop the server
            self._fail("internal-error", f"overload reply: {type(exc).__name__}: {exc}")
        finally:
            self._rejecting -= 1
            await trio.aclose_forcefully(stream)

    async def handle_stream(self, stream: trio.abc.HalfCloseableStream,
                            conn_state: _Conn | None = None) -> None:
        """Serve one connection to its end (also usable with in-memory streams).

        Never raises but for cancellation: whatever happens on a connection
        ends that connection only.
        """
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
        except _Drop:
            pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._fail("peer-reset")
        except trio.TooSlowError:
            self._fail("send-timeout")
        except Exception as exc:  # noqa: BLE001 - no input from the network may stop the server
            self._fail("internal-error", f"connection error: {type(exc).__name__}: {exc}")
            graceful = await self._send_500(stream, conn)
        finally:
            try:
                if graceful:
                    await _linger_close(stream)
            finally:
                await trio.aclose_forcefully(stream)
                self._idle_end(conn_state)
                self._conns.discard(conn_state)
                if self._closing and not self._conns:
                    self._drained.set()

    async def _send_500(self, stream: trio.abc.HalfCloseableStream,
                        conn: h11.Connection) -> bool:
        """After an unexpected error: a 500 if a response can still start; True if sent."""
        try:
            return await self._send_error(stream, conn, None, 500, "internal error")
        except Exception:  # noqa: BLE001 - the connection is being dropped anyway
            return False

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
        close = False
        now = trio.current_time()
        with trio.CancelScope(deadline=now + self.limits.idle_timeout_s) as scope:
            self._idle_begin(conn_state, scope, now)
            request = await self._receive(stream, conn, conn_state, scope, phase, slot)
            phase[0] = "handler"
            scope.deadline = trio.current_time() + self.limits.handler_timeout_s
            try:
                response = await self._handler(request)
            except Exception as exc:  # noqa: BLE001 - one bad request must not kill the server
                self._fail("handler-error", f"handler error on {request.method} "
                           f"{request.path[:200]}: {type(exc).__name__}: {exc}")
                response = text_response(500, "internal error")
                close = True  # a handler in an unknown state: start afresh
            response = semantics.apply(request, response)
            phase[0] = "send"
            await self._respond(stream, conn, request, response, scope, close=close)
        self._idle_end(conn_state)
        if not scope.cancelled_caught:
            return
        if phase[0] == "idle" or conn_state.shed:
            # Idle timeout, shutdown, or shed for room (a request racing the
            # shed is dropped, as a client expects of an idle keep-alive
            # connection closing under it).
            raise _Drop
        if phase[0] == "head":
            # Slowloris: a head that never completes. Say so and close.
            await self._refuse(stream, conn, None, 408, "request head too slow", "head-timeout")
        if phase[0] == "body":
            await self._refuse(stream, conn, request, 408, "request body too slow",
                               "body-timeout")
        if phase[0] == "handler":
            await self._refuse(stream, conn, request, 503, "handler timed out",
                               "handler-timeout")
        raise trio.TooSlowError  # a send made no progress: drop the connection

    async def _receive(self, stream: trio.abc.HalfCloseableStream, conn: h11.Connection,
                       conn_state: _Conn, scope: trio.CancelScope,
                       phase: list[str], slot: _BodySlot) -> Request:
        """Read one request: head (idle, then a hard deadline from its first byte), body."""
        limits = self.limits
        event: Any
        # The raw bytes of the head are kept (from what h11 already holds, if
        # pipelined, then each read) for the checks h11 does not make.
        pending = conn.trailing_data[0]
        raw = [pending] if pending else []
        received = len(pending)
        try:
            while True:
                event = conn.next_event()
                if event is not h11.NEED_DATA:
                    break
                data = bytes(await stream.receive_some(_RECV))
                if data and phase[0] == "idle":
                    phase[0] = "head"
                    self._idle_end(conn_state)
                    scope.deadline = min(scope.deadline,
                                         trio.current_time() + limits.head_timeout_s)
                raw.append(data)
                received += len(data)
                if received > limits.max_header_bytes:
                    # Refuse an oversized head before h11 parses it whole: a
                    # 64 KiB head of tiny headers costs h11 ~15 ms of CPU.
                    end = head_end(b"".join(raw))
                    if end < 0 or end > limits.max_header_bytes:
                        await self._refuse_standalone(
                            stream, 431, f"request head over {limits.max_header_bytes} bytes",
                            "head-too-large")
                conn.receive_data(data)
        except h11.RemoteProtocolError as exc:
            self._idle_end(conn_state)
            status, why = exc.error_status_hint, str(exc)
            label = _H11_LABELS.get(status, "bad-request")
            buf = b"".join(raw)
            end = head_end(buf)
            if status == 501 and end > 0:
                # h11 refuses every Transfer-Encoding but chunked with 501;
                # RFC 9112 §6.3 wants 400 when chunked is not the final
                # coding (a smuggling sign), which our own check tells.
                try:
                    check_head(buf[:end])
                except HttpRefused as ours:
                    status, why, label = ours.status, str(ours), ours.label
            await self._refuse(stream, conn, None, status, why, label, scope)
        self._idle_end(conn_state)
        if isinstance(event, h11.ConnectionClosed):
            raise _Close
        assert isinstance(event, h11.Request)
        phase[0] = "head"
        # h11 caps only a head still incomplete; one arriving in a single read
        # is measured here, so the cap holds however the bytes were split.
        head_size = len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers)
        if head_size > limits.max_header_bytes:
            await self._refuse(stream, conn, None, 431,
                               f"request head over {limits.max_header_bytes} bytes",
                               "head-too-large", scope)
        buf = b"".join(raw)
        end = head_end(buf)
        try:
            check_head(buf[:end] if end > 0 else buf)
            headers = tuple((k.decode("latin-1"), v.decode("latin-1"))
                            for k, v in event.headers)  # h11 gives names lower-cased
            head = Request(event.method.decode("ascii"), event.target.decode("latin-1"),
                           headers)
        except HttpRefused as exc:
            await self._refuse(stream, conn, None, exc.status, str(exc), exc.label, scope)
        cap = limits.max_body_bytes
        if self._body_limit is not None:
            cap = min(cap, self._body_limit(head))
        length = head.header("content-length")
        if length is not None and int(length) > cap:
            await self._refuse(stream, conn, head, 413, f"body over {cap} bytes",
                               "body-too-large", scope)
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            await self._refuse_body(stream, conn, head, exc, scope)
        if isinstance(event, h11.EndOfMessage):
            await self._check_trailers(stream, conn, head, event, scope)
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
                        await self._refuse(stream, conn, head, 413, f"body over {cap} bytes",
                                           "body-too-large", scope)
                    if size > limits.large_body_bytes and not slot.held:
                        await self._large_bodies.acquire_on_behalf_of(slot)
                        slot.held = True
                    chunks.append(bytes(event.data))
                else:
                    raise _Close  # ConnectionClosed mid-body: the client gave up
                event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            await self._refuse_body(stream, conn, head, exc, scope)
        await self._check_trailers(stream, conn, head, event, scope)
        return Request(head.method, head.target, head.headers, b"".join(chunks))

    async def _check_trailers(self, stream: trio.abc.HalfCloseableStream, conn: h11.Connection,
                              head: Request, end: h11.EndOfMessage,
                              scope: trio.CancelScope) -> None:
        # Trailers are ignored, but held the head's cap like the head itself
        # (h11 caps them only while incomplete).
        if end.headers and sum(len(k) + len(v) + 4 for k, v in end.headers) > \
                self.limits.max_header_bytes:
            await self._refuse(stream, conn, head, 413, "chunk header or trailer section too long",
                               "body-too-large", scope)

    async def _refuse_body(self, stream: trio.abc.HalfCloseableStream, conn: h11.Connection,
                           head: Request, exc: h11.RemoteProtocolError,
                           scope: trio.CancelScope) -> NoReturn:
        if exc.error_status_hint == 431:
            # Past the head, h11's incomplete-event cap is hit by a chunk
            # header (its extensions) or the trailers: the body's framing.
            await self._refuse(stream, conn, head, 413, "chunk header or trailer section too long",
                               "body-too-large", scope)
        await self._refuse(stream, conn, head, exc.error_status_hint, str(exc),
                           _H11_LABELS.get(exc.error_status_hint, "bad-request"), scope)

    async def _refuse(self, stream: trio.abc.HalfCloseableStream, conn: h11.Connection,
                      request: Request | None, status: int, why: str, label: str,
                      scope: trio.CancelScope | None = None) -> NoReturn:
        """Count, answer `status` (best effort) and end the connection."""
        self._fail(label)
        await self._send_error(stream, conn, request, status, why, scope)
        raise _Close

    async def _refuse_standalone(self, stream: trio.abc.HalfCloseableStream, status: int,
                                 why: str, label: str) -> NoReturn:
        """As `_refuse`, for a head h11 has not been given (so cannot answer)."""
        self._fail(label)
        resp = text_response(status, why)
        with trio.move_on_after(1.0):
            await stream.send_all(_standalone(resp))
        self._record(None, resp, len(resp.body))
        raise _Close

    async def _send_error(self, stream: trio.abc.HalfCloseableStream, conn: h11.Connection,
                          request: Request | None, status: int, why: str,
                          scope: trio.CancelScope | None = None) -> bool:
        """Best effort, within a second: the connection closes after it anyway.

        True if the response was sent.
        """
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return False
        response = text_response(status, why.splitlines()[0][:200] if why else "error")
        try:
            with trio.CancelScope() as own:
                own.deadline = trio.current_time() + 1.0
                if scope is not None:
                    scope.deadline = own.deadline + 0.1
                await self._respond(stream, conn, request, response, own, close=True,
                                    send_timeout=1.0)
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
            return False
        return not own.cancelled_caught

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

    def _fail(self, label: str, line: str | None = None) -> None:
        """Count a connection refused or cut; log `line` (an unexpected error) if given."""
        try:
            if self._on_failure is not None:
                self._on_failure(label)
        except Exception as exc:  # noqa: BLE001 - a metrics sink must not stop the server
            line = f"{line or label}; and counting it failed: {exc!r}"
        if line is not None:
            self._warn(label, line)

    def _warn(self, key: str, line: str) -> None:
        """Log one line, at most once a second per kind, saying how many were skipped."""
        now = trio.current_time()
        last = self._warned.get(key)
        if last is not None and now - last < _WARN_EVERY_S:
            self._unwarned[key] = self._unwarned.get(key, 0) + 1
            return
        self._warned[key] = now
        skipped = self._unwarned.pop(key, 0)
        # repr() keeps whatever the peer put in the message on one line.
        text = repr(line)[1:-1][:500]
        if skipped:
            text += f" ({skipped} more like it in the last {_WARN_EVERY_S:g} s not logged)"
        try:
            self._log(text)
        except Exception:  # noqa: BLE001, S110 - a broken log sink must not stop the server
            pass


def _standalone(response: Response) -> bytes:
    """The bytes of a closing `response` without a parsed request (h11 needs one)."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    conn.next_event()
    data = _head_bytes(conn, response, len(response.body), close=True)
    assert isinstance(response.body, bytes)
    data += conn.send(h11.Data(data=response.body)) or b""
    return data + (conn.send(h11.EndOfMessage()) or b"")


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
