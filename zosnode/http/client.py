"""zosnode's one HTTP/1.1 client: a trio shell around h11, keep-alive pool, deadlines, caps.

Each wait has a deadline (connect, the whole head, byte progress: a drip is cut off like
silence); a body is never read past `max_size`. Framing follows RFC 9112 §6.3 strictly
(`framing_fault`): request smuggling and desynchronised keep-alive connections feed on a
lenient reading. `HttpUsageError` is ours, `HttpPeerError` the peer's; retries: the fetcher's."""

import contextlib
import re
import ssl
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11
import trio

from zosnode.http.errors import HttpError, HttpUsageError

_READ_CHUNK = 1024 * 1024
_SEND_CHUNK = 64 * 1024


class HttpPeerError(HttpError):
    """The peer (or the network to it) failed or sent something wrong."""


class HttpTimeout(HttpPeerError):
    """A deadline passed: connect, response head, or a stalled body."""


class HttpMalformed(HttpPeerError):
    """A response head we cannot parse or refuse to frame: its connection is not reused."""


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
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise HttpUsageError(f"bad URL {url!r}: {exc}") from None
    if port is None:  # urlsplit lowercases the scheme
        port = 443 if parts.scheme == "https" else 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Origin(parts.scheme, parts.hostname or "", port), target


@dataclass(frozen=True)
class Timeouts:
    """Seconds for each wait (`head`: the whole head, from the request sent); `body_idle`
    allows no byte before the head, and needs `_SEND_CHUNK` sent or `window_bytes` got."""

    connect: float = 5.0
    head: float = 10.0
    body_idle: float = 10.0
    window_bytes: int = 1

    def __post_init__(self) -> None:
        if min(self.connect, self.head, self.body_idle) <= 0:
            raise HttpUsageError("timeouts must be positive")
        if self.window_bytes < 1:
            raise HttpUsageError("window_bytes must be at least 1")


@dataclass
class ByteProgress:
    """The body's byte-progress rule, pure: a window short of `min_bytes` is a stall (or drip)."""

    window_s: float
    min_bytes: int
    start: float
    got: int = 0

    def deadline(self) -> float:
        return self.start + self.window_s

    def received(self, n: int, now: float) -> None:
        self.got += n
        if self.got >= self.min_bytes:
            self.start, self.got = now, 0


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]  # names lowercased
    body: bytes


@dataclass
class _Conn:
    stream: trio.abc.Stream
    proto: h11.Connection = field(default_factory=lambda: h11.Connection(h11.CLIENT))

    async def close(self) -> None:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(self.stream)


@dataclass(frozen=True)
class _Call:
    request: h11.Request
    max_size: int
    byte_range: tuple[int, int] | None
    body: bytes
    wanted: Container[int]
    timeouts: Timeouts


class HttpClient:
    """A keep-alive pool with at most `per_origin` requests in flight per origin."""

    def __init__(self, *, timeouts: Timeouts | None = None, per_origin: int = 4,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        if per_origin < 1:
            raise HttpUsageError("per_origin must be at least 1")
        self.timeouts = timeouts or Timeouts()
        self.per_origin = per_origin
        self._ssl = ssl_context
        self._idle: dict[Origin, list[_Conn]] = {}
        self._limits: dict[Origin, trio.Semaphore] = {}

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for conn in [conn for conns in idle.values() for conn in conns]:
            await conn.close()

    async def get(self, url: str, *, max_size: int, byte_range: tuple[int, int] | None = None,
                  headers: Mapping[str, str] | None = None, timeouts: Timeouts | None = None,
                  ok: tuple[int, ...] | None = None) -> Reply:
        """GET `url`: 200 (206 for `byte_range`, inclusive; or a status in `ok`, as 304), else
        `HttpStatusError`; a body cut short or stalled: `HttpTruncated`, to resume with a range."""
        own = [("Accept-Encoding", "identity")]
        if byte_range is not None:
            first, last = byte_range
            if not 0 <= first <= last:
                raise HttpUsageError(f"bad byte range {byte_range}")
            own.append(("Range", f"bytes={first}-{last}"))
        wanted = ok or ((206,) if byte_range is not None else (200,))
        return await self._send("GET", url, own, headers, max_size, byte_range, b"", wanted,
                                timeouts)

    async def post(self, url: str, body: bytes, *, max_size: int,
                   headers: Mapping[str, str] | None = None,
                   ok: tuple[int, ...] = (200, 201, 204)) -> Reply:
        """POST `body` (the node's signed heartbeats); a status outside `ok` raises."""
        own = [("Content-Length", str(len(body)))]
        return await self._send("POST", url, own, headers, max_size, None, body, ok, None)

    async def _send(self, method: str, url: str, own: list[tuple[str, str]],
                    headers: Mapping[str, str] | None, max_size: int,
                    byte_range: tuple[int, int] | None, body: bytes, wanted: Container[int],
                    timeouts: Timeouts | None) -> Reply:
        if max_size < 0:
            raise HttpUsageError("max_size must not be negative")
        origin, target = split_url(url)
        req_headers = [("Host", origin.host_header), ("User-Agent", "zosnode"), *own,
                       *(headers or {}).items()]
        request = h11.Request(method=method, target=target, headers=req_headers)
        call = _Call(request, max_size, byte_range, body, wanted, timeouts or self.timeouts)
        async with self._limits.setdefault(origin, trio.Semaphore(self.per_origin)):
            # A pooled connection closed while idle fails before a byte: retry once fresh.
            if idle := self._idle.get(origin):
                with contextlib.suppress(_StaleConnection):
                    return await self._on_conn(url, origin, idle.pop(), call)
            conn = await self._connect(origin, call.timeouts)
            try:
                return await self._on_conn(url, origin, conn, call)
            except _StaleConnection:
                raise HttpPeerError(f"{url}: connection closed before a response") from None

    async def _connect(self, origin: Origin, timeouts: Timeouts) -> _Conn:
        try:
            with trio.fail_after(timeouts.connect):
                stream: trio.abc.Stream = await trio.open_tcp_stream(origin.host, origin.port)
                if origin.scheme == "https":
                    ctx = self._ssl or ssl.create_default_context()
                    stream = tls = trio.SSLStream(stream, ctx, server_hostname=origin.host)
                    await tls.do_handshake()
        except trio.TooSlowError:
            raise HttpTimeout(f"{origin.host}:{origin.port}: connect timed out") from None
        except (OSError, trio.BrokenResourceError, ssl.SSLError) as exc:
            raise HttpPeerError(f"{origin.host}:{origin.port}: connect failed: {exc}") from None
        return _Conn(stream)

    async def _on_conn(self, url: str, origin: Origin, conn: _Conn, call: _Call) -> Reply:
        reusable = False
        try:
            response = await self._roundtrip(url, conn, call)
            # Bytes after the body would be read as the next response: drop it.
            p = conn.proto
            reusable = p.our_state is p.their_state is h11.DONE and not p.trailing_data[0] \
                or p.our_state is h11.IDLE  # a fresh one after a body read past h11
            return response
        finally:
            if reusable:
                if conn.proto.our_state is h11.DONE:
                    conn.proto.start_next_cycle()
                self._idle.setdefault(origin, []).append(conn)
            else:
                await conn.close()

    async def _roundtrip(self, url: str, conn: _Conn, call: _Call) -> Reply:
        request, t, proto = call.request, call.timeouts, conn.proto
        raw = bytearray()  # what came before the head was complete, to check its framing
        informational = 0
        try:
            data = proto.send(request) or b""
            if call.body:
                data += proto.send(h11.Data(data=call.body)) or b""
            data += proto.send(h11.EndOfMessage()) or b""
            view = memoryview(data)  # each `_SEND_CHUNK` within `body_idle`: else a stall
            for start in range(0, len(view), _SEND_CHUNK):
                with trio.move_on_after(t.body_idle) as window:
                    await conn.stream.send_all(view[start:start + _SEND_CHUNK])
                if window.cancelled_caught:
                    raise HttpTimeout(f"{url}: peer took no bytes for {t.body_idle}s")
            with trio.fail_after(t.head):
                while not isinstance(event := proto.next_event(), h11.Response):
                    if isinstance(event, h11.InformationalResponse):
                        informational += 1
                    elif event is not h11.NEED_DATA:
                        raise HttpPeerError(f"{url}: unexpected {type(event).__name__}")
                    else:
                        with trio.move_on_after(t.body_idle) as idle:
                            chunk = await conn.stream.receive_some(_READ_CHUNK)
                        if idle.cancelled_caught:
                            raise HttpTimeout(f"{url}: no byte for {t.body_idle}s")
                        if not chunk and not raw:
                            raise _StaleConnection
                        raw += chunk
                        proto.receive_data(bytes(chunk))
        except trio.TooSlowError:
            raise HttpTimeout(f"{url}: no response head within {t.head}s") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            if not raw:  # nothing came: the connection was stale
                raise _StaleConnection from None
            raise HttpPeerError(f"{url}: connection failed: {exc}") from None
        except h11.RemoteProtocolError as exc:
            raise HttpMalformed(f"{url}: bad response head: {exc}") from None

        if (fault := framing_fault(final_head(bytes(raw), informational))) is not None:
            raise HttpMalformed(f"{url}: refused response head: {fault}")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
        if event.status_code not in call.wanted:
            raise HttpStatusError(url, event.status_code)
        # HEAD, 204 and 304 have no body whatever Content-Length says; h11 reads none.
        bodiless = request.method == b"HEAD" or event.status_code in (204, 304)
        expected = None if bodiless else _expected_length(url, headers, call.byte_range)
        if expected is not None and expected > call.max_size:
            raise HttpOversize(f"{url}: {expected} bytes offered, cap is {call.max_size}")
        if expected is None or "transfer-encoding" in headers:
            return Reply(event.status_code, headers, await self._read_body(url, conn, call))
        keep = event.http_version == b"1.1" and "close" not in headers.get("connection", "").lower()
        return Reply(event.status_code, headers, await self._read_sized(url, conn, call, expected,
                                                                        keep))

    async def _read_sized(self, url: str, conn: _Conn, call: _Call, expected: int,
                          keep: bool) -> bytes:
        """A body of known length, past h11 (its events cost 40% of a GET's CPU): what h11 holds
        past the head, then chunks, never a byte past the body. Then a fresh h11 state, which
        the pool reuses, unless `keep` is false or bytes came past the body."""
        t, held = call.timeouts, conn.proto.trailing_data[0]
        parts: list[bytes | bytearray] = [held[:expected]]
        received = len(parts[0])
        progress = ByteProgress(t.body_idle, t.window_bytes, trio.current_time())
        while received < expected:
            chunk: bytes | bytearray = b""
            why = "the connection closed"
            try:
                with trio.move_on_at(progress.deadline()) as window:
                    chunk = await conn.stream.receive_some(min(_READ_CHUNK, expected - received))
                if window.cancelled_caught:
                    why = f"stalled: under {t.window_bytes} bytes in {t.body_idle}s"
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                why = str(exc)
            if not chunk:
                raise HttpTruncated(f"{url}: body cut short after {received} bytes: {why}",
                                    b"".join(parts), expected)
            progress.received(len(chunk), trio.current_time())
            parts.append(chunk)
            received += len(chunk)
        if keep and len(held) <= expected and conn.proto.our_state is h11.DONE:
            conn.proto = h11.Connection(h11.CLIENT)
        return b"".join(parts)

    async def _read_body(self, url: str, conn: _Conn, call: _Call) -> bytes:
        """A body chunked or up to the connection's close: through h11."""
        proto, t, max_size = conn.proto, call.timeouts, call.max_size
        parts: list[bytes] = []
        received = 0
        progress = ByteProgress(t.body_idle, t.window_bytes, trio.current_time())

        def truncated(why: str) -> HttpTruncated:
            message = f"{url}: body cut short after {received} bytes: {why}"
            return HttpTruncated(message, b"".join(parts), None)

        while True:
            try:
                event = proto.next_event()
            except h11.RemoteProtocolError as exc:
                raise truncated(str(exc)) from None
            if event is h11.NEED_DATA:
                try:
                    with trio.move_on_at(progress.deadline()) as window:
                        chunk = await conn.stream.receive_some(_READ_CHUNK)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    raise truncated(str(exc)) from None
                if window.cancelled_caught:
                    raise truncated(f"stalled: under {t.window_bytes} bytes in {t.body_idle}s")
                progress.received(len(chunk), trio.current_time())
                proto.receive_data(bytes(chunk))
            elif isinstance(event, h11.Data):
                received += len(event.data)
                if received > max_size:
                    raise HttpOversize(f"{url}: body passed the {max_size}-byte cap")
                parts.append(event.data)  # h11's own slice of its buffer: no second copy
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(parts)
            else:
                raise truncated(f"unexpected {type(event).__name__}")


class _StaleConnection(Exception):
    """A connection closed before any response byte (pooled ones age out)."""


# h11 ends a head at the first blank line, bare LF or CRLF; so do we.
_BLANK_LINE = re.compile(rb"\n\r?\n")


def final_head(raw: bytes, informational: int) -> bytes:
    """The final response's head in the bytes read so far (1xx heads come first)."""
    pos, head = 0, raw
    for _ in range(informational + 1):
        m = _BLANK_LINE.search(raw, pos)
        if m is None:
            return raw[pos:]
        head, pos = raw[pos:m.end()], m.end()
    return head


def framing_fault(head: bytes) -> str | None:
    """Why a response head must be refused under RFC 9112 §6.3 / §5.2, or None. Pure.
    h11 merges identical Content-Length values, lets Transfer-Encoding win and unfolds
    obs-fold lines, as the RFC allows; with nothing parsing behind us, we refuse them."""
    fields: dict[bytes, list[bytes]] = {}
    for line in head.split(b"\n")[1:]:
        line = line.removesuffix(b"\r")
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            return "obsolete line folding"
        name, _, value = line.partition(b":")
        fields.setdefault(name.strip().lower(), []).append(value.strip())
    lengths = fields.get(b"content-length", [])
    codings = [c.strip().lower() for v in fields.get(b"transfer-encoding", [])
               for c in v.split(b",")]
    if codings and lengths:
        return "both Transfer-Encoding and Content-Length"
    if len(lengths) > 1 or any(b"," in v for v in lengths):
        return "several Content-Length values"
    if codings and codings != [b"chunked"]:
        return f"Transfer-Encoding {b', '.join(codings).decode('latin-1')!r} (only chunked)"
    return None


def _expected_length(url: str, headers: Mapping[str, str],
                     byte_range: tuple[int, int] | None) -> int | None:
    raw = headers.get("content-length")  # h11 refused any but ASCII digits
    length = None if raw is None else int(raw)
    if byte_range is not None:
        want = byte_range[1] - byte_range[0] + 1
        crange = headers.get("content-range", "")
        if not crange.startswith(f"bytes {byte_range[0]}-"):
            raise HttpPeerError(f"{url}: Content-Range {crange!r} does not match the request")
        if length is not None and length > want:
            raise HttpOversize(f"{url}: {length} bytes for a {want}-byte range")
    return length
