"""The node's HTTP/1.1 client: trio + h11, keep-alive pool, deadlines, size caps.

h11 is the sans-IO protocol core; this module is the thin I/O shell around
it. One `HttpClient` keeps idle keep-alive connections per origin and bounds
the requests in flight per origin. Every network wait has a deadline: connect,
the response head, and each read of the body (a peer that stalls mid-body is
cut off). A body is never read past `max_size`: a Content-Length over the
cap is refused before a byte of the body is read.

Errors: `HttpUsageError` is our mistake (a URL we cannot use); every
`HttpPeerError` is the peer's (refused connection, bad status, stall,
truncation, oversize, garbage). Retries across mirrors belong to the fetcher.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11
import trio

from zosnode.errors import ZosError

_READ_CHUNK = 256 * 1024
USER_AGENT = "zosnode"


class HttpError(ZosError):
    """Base of the HTTP client's errors."""


class HttpUsageError(HttpError):
    """We asked for something the client cannot do (bad URL, bad argument)."""


class HttpPeerError(HttpError):
    """The peer (or the network to it) failed or sent something wrong."""


class HttpTimeout(HttpPeerError):
    """A deadline passed: connect, response head, or a stalled body."""


class HttpStatusError(HttpPeerError):
    """A status we did not ask for (404, 5xx, ...)."""

    def __init__(self, url: str, status: int) -> None:
        super().__init__(f"{url}: HTTP {status}")
        self.status = status


class HttpOversize(HttpPeerError):
    """The peer offered or sent more bytes than the cap."""


class HttpTruncated(HttpPeerError):
    """The body ended before its stated length; `received` holds what came."""

    def __init__(self, message: str, received: bytes, expected: int | None) -> None:
        super().__init__(message)
        self.received = received
        self.expected = expected


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    def __post_init__(self) -> None:
        if self.scheme not in ("http", "https"):
            raise HttpUsageError(f"unsupported URL scheme {self.scheme!r}")
        if not self.host:
            raise HttpUsageError("URL has no host")
        if not 0 < self.port < 65536:
            raise HttpUsageError(f"bad port {self.port}")

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def split_url(url: str) -> tuple[Origin, str]:
    """An absolute URL as (origin, request target)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise HttpUsageError(f"bad URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if port is None:
        port = 443 if scheme == "https" else 80
    origin = Origin(scheme, parts.hostname or "", port)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return origin, target


@dataclass(frozen=True)
class Timeouts:
    """Seconds for each network wait; `body_idle` cuts off a stalled body."""

    connect: float = 5.0
    head: float = 10.0
    body_idle: float = 10.0

    def __post_init__(self) -> None:
        if min(self.connect, self.head, self.body_idle) <= 0:
            raise HttpUsageError("timeouts must be positive")


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass
class _Conn:
    stream: trio.abc.Stream
    proto: h11.Connection = field(default_factory=lambda: h11.Connection(h11.CLIENT))

    async def close(self) -> None:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(self.stream)


class HttpClient:
    """A keep-alive pool with at most `per_origin` requests in flight per origin."""

    def __init__(
        self,
        *,
        timeouts: Timeouts | None = None,
        per_origin: int = 4,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if per_origin < 1:
            raise HttpUsageError("per_origin must be at least 1")
        self.timeouts = timeouts or Timeouts()
        self._per_origin = per_origin
        self._ssl = ssl_context
        self._idle: dict[Origin, list[_Conn]] = {}
        self._limits: dict[Origin, trio.Semaphore] = {}

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                await conn.close()

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def get(
        self,
        url: str,
        *,
        max_size: int,
        byte_range: tuple[int, int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """GET `url`; 200 (or 206 for a range) with a body of at most `max_size`.

        `byte_range` is (first, last) inclusive. Any other status raises
        `HttpStatusError`; a body cut short raises `HttpTruncated` with the
        bytes received so far, so the caller can resume with a range.
        """
        own = [("Accept-Encoding", "identity")]
        if byte_range is not None:
            first, last = byte_range
            if not 0 <= first <= last:
                raise HttpUsageError(f"bad byte range {byte_range}")
            own.append(("Range", f"bytes={first}-{last}"))
        wanted = (206,) if byte_range is not None else (200,)
        return await self._send("GET", url, own, headers, max_size, byte_range, b"", wanted)

    async def post(
        self,
        url: str,
        body: bytes,
        *,
        max_size: int,
        headers: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201, 204),
    ) -> Response:
        """POST `body` to `url`; a status outside `ok` raises `HttpStatusError`.

        Same pool, deadlines and response cap as `get` (the node posts its
        signed heartbeats this way).
        """
        own = [("Content-Length", str(len(body)))]
        return await self._send("POST", url, own, headers, max_size, None, body, ok)

    async def _send(
        self,
        method: str,
        url: str,
        own: list[tuple[str, str]],
        headers: Mapping[str, str] | None,
        max_size: int,
        byte_range: tuple[int, int] | None,
        body: bytes,
        wanted: tuple[int, ...],
    ) -> Response:
        if max_size < 0:
            raise HttpUsageError("max_size must not be negative")
        origin, target = split_url(url)
        req_headers = [("Host", origin.host_header), ("User-Agent", USER_AGENT), *own,
                       *(headers or {}).items()]
        request = h11.Request(method=method, target=target, headers=req_headers)
        limit = self._limits.setdefault(origin, trio.Semaphore(self._per_origin))
        async with limit:
            return await self._exchange(url, origin,
                                        _Call(request, max_size, byte_range, body, wanted))

    async def _exchange(
        self,
        url: str,
        origin: Origin,
        call: _Call,
    ) -> Response:
        # A pooled connection may have been closed by the server while idle;
        # if it fails before any response byte, retry once on a fresh one.
        conn = self._take_idle(origin)
        if conn is not None:
            try:
                return await self._on_conn(url, origin, conn, call)
            except _StaleConnection:
                pass
        conn = await self._connect(origin)
        try:
            return await self._on_conn(url, origin, conn, call)
        except _StaleConnection:
            raise HttpPeerError(f"{url}: connection closed before a response") from None

    def _take_idle(self, origin: Origin) -> _Conn | None:
        conns = self._idle.get(origin)
        return conns.pop() if conns else None

    async def _connect(self, origin: Origin) -> _Conn:
        try:
            with trio.fail_after(self.timeouts.connect):
                stream: trio.abc.Stream = await trio.open_tcp_stream(origin.host, origin.port)
                if origin.scheme == "https":
                    ctx = self._ssl or ssl.create_default_context()
                    tls = trio.SSLStream(stream, ctx, server_hostname=origin.host)
                    await tls.do_handshake()
                    stream = tls
        except trio.TooSlowError:
            raise HttpTimeout(f"{origin.host}:{origin.port}: connect timed out") from None
        except (OSError, trio.BrokenResourceError, ssl.SSLError) as exc:
            raise HttpPeerError(f"{origin.host}:{origin.port}: connect failed: {exc}") from None
        return _Conn(stream)

    async def _on_conn(
        self,
        url: str,
        origin: Origin,
        conn: _Conn,
        call: _Call,
    ) -> Response:
        reusable = False
        try:
            response = await self._roundtrip(url, conn, call)
            reusable = (
                conn.proto.our_state is h11.DONE and conn.proto.their_state is h11.DONE
            )
            return response
        finally:
            if reusable:
                conn.proto.start_next_cycle()
                self._idle.setdefault(origin, []).append(conn)
            else:
                await conn.close()

    async def _roundtrip(
        self,
        url: str,
        conn: _Conn,
        call: _Call,
    ) -> Response:
        request, max_size, byte_range, body, wanted = (
            call.request, call.max_size, call.byte_range, call.body, call.wanted)
        proto = conn.proto
        got_any = False
        try:
            data = proto.send(request) or b""
            if body:
                data += proto.send(h11.Data(data=body)) or b""
            data += proto.send(h11.EndOfMessage()) or b""
            with trio.fail_after(self.timeouts.head):
                await conn.stream.send_all(data)
                while True:
                    event = proto.next_event()
                    if event is h11.NEED_DATA:
                        chunk = await conn.stream.receive_some(_READ_CHUNK)
                        if not chunk and not got_any:
                            raise _StaleConnection
                        got_any = True
                        proto.receive_data(bytes(chunk))
                        continue
                    if isinstance(event, h11.InformationalResponse):
                        continue
                    if isinstance(event, h11.Response):
                        break
                    raise HttpPeerError(f"{url}: unexpected {type(event).__name__}")
        except trio.TooSlowError:
            raise HttpTimeout(f"{url}: no response head within {self.timeouts.head}s") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            if not got_any:
                raise _StaleConnection from None
            raise HttpPeerError(f"{url}: connection failed: {exc}") from None
        except h11.RemoteProtocolError as exc:
            raise HttpPeerError(f"{url}: bad response: {exc}") from None

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
        if event.status_code not in wanted:
            raise HttpStatusError(url, event.status_code)
        expected = _expected_length(url, headers, byte_range)
        if expected is not None and expected > max_size:
            raise HttpOversize(f"{url}: {expected} bytes offered, cap is {max_size}")
        body = await self._read_body(url, conn, max_size, expected)
        return Response(event.status_code, headers, body)

    async def _read_body(
        self, url: str, conn: _Conn, max_size: int, expected: int | None
    ) -> bytes:
        proto = conn.proto
        parts: list[bytes] = []
        received = 0

        def truncated(why: str) -> HttpTruncated:
            return HttpTruncated(
                f"{url}: body cut short after {received} bytes: {why}", b"".join(parts), expected
            )

        while True:
            try:
                event = proto.next_event()
            except h11.RemoteProtocolError as exc:
                raise truncated(str(exc)) from None
            if event is h11.NEED_DATA:
                try:
                    with trio.fail_after(self.timeouts.body_idle):
                        chunk = await conn.stream.receive_some(_READ_CHUNK)
                except trio.TooSlowError:
                    raise truncated(f"stalled for {self.timeouts.body_idle}s") from None
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    raise truncated(str(exc)) from None
                proto.receive_data(bytes(chunk))
                continue
            if isinstance(event, h11.Data):
                received += len(event.data)
                if received > max_size:
                    raise HttpOversize(f"{url}: body passed the {max_size}-byte cap")
                parts.append(bytes(event.data))
                continue
            if isinstance(event, h11.EndOfMessage):
                break
            raise truncated(f"unexpected {type(event).__name__}")
        body = b"".join(parts)
        if expected is not None and len(body) != expected:
            raise truncated(f"expected {expected} bytes")
        return body


@dataclass(frozen=True)
class _Call:
    """One request as it travels through the pool: what to send and what to accept."""

    request: h11.Request
    max_size: int
    byte_range: tuple[int, int] | None
    body: bytes
    wanted: tuple[int, ...]


class _StaleConnection(Exception):
    """A connection closed before any response byte (pooled ones age out)."""


def _expected_length(
    url: str, headers: Mapping[str, str], byte_range: tuple[int, int] | None
) -> int | None:
    raw = headers.get("content-length")
    length: int | None = None
    if raw is not None:
        if not raw.isdigit():
            raise HttpPeerError(f"{url}: bad Content-Length {raw!r}")
        length = int(raw)
    if byte_range is not None:
        want = byte_range[1] - byte_range[0] + 1
        crange = headers.get("content-range", "")
        if not crange.startswith(f"bytes {byte_range[0]}-"):
            raise HttpPeerError(f"{url}: Content-Range {crange!r} does not match the request")
        if length is not None and length > want:
            raise HttpOversize(f"{url}: {length} bytes for a {want}-byte range")
    return length
