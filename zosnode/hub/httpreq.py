"""A small keep-alive HTTP/1.1 client for the hub's own tools (trio + h11).

Used by `hub push`, `hub nodes` and the S3 backend; the node's data path has
its own hardened client (`zosnode.http.client`). Every wait has a deadline
and every response body a size cap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11
import trio

from zosnode.errors import UsageError, ZosError


class RequestError(ZosError):
    """The server could not be reached, timed out, or answered outside HTTP."""


class RequestUsageError(RequestError, UsageError):
    """We were given a URL this client cannot use."""


@dataclass(frozen=True)
class Reply:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


@dataclass(frozen=True)
class Origin:
    host: str
    port: int

    @classmethod
    def from_url(cls, url: str) -> tuple[Origin, str]:
        """The origin and the path prefix of an http:// URL."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise RequestUsageError(f"{url!r} is not an http://HOST[:PORT][/PATH] URL")
        return cls(parts.hostname, parts.port or 80), parts.path.rstrip("/")

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 80 else f"{host}:{self.port}"


class HttpConnection:
    """One keep-alive connection, reopened when the server closes it."""

    def __init__(self, origin: Origin, *, timeout_s: float = 30.0,
                 max_body: int = 64 * 1024 * 1024) -> None:
        self.origin = origin
        self.timeout_s = timeout_s
        self.max_body = max_body
        self._stream: trio.SocketStream | None = None
        self._conn: h11.Connection | None = None

    async def aclose(self) -> None:
        if self._stream is not None:
            await trio.aclose_forcefully(self._stream)
        self._stream = self._conn = None

    async def request(self, method: str, target: str, *, body: bytes = b"",
                      headers: Sequence[tuple[str, str]] = ()) -> Reply:
        try:
            with trio.fail_after(self.timeout_s):
                return await self._request(method, target, body, headers)
        except trio.TooSlowError:
            await self.aclose()
            raise RequestError(f"{method} {target}: no answer from {self.origin.netloc} "
                               f"within {self.timeout_s:g} s") from None
        except (OSError, trio.BrokenResourceError, h11.ProtocolError) as exc:
            await self.aclose()
            raise RequestError(f"{method} {target} on {self.origin.netloc}: {exc}") from None

    async def _request(self, method: str, target: str, body: bytes,
                       headers: Sequence[tuple[str, str]]) -> Reply:
        if self._stream is None or self._conn is None or self._conn.our_state is not h11.IDLE:
            await self.aclose()
            self._stream = await trio.open_tcp_stream(self.origin.host, self.origin.port)
            self._conn = h11.Connection(h11.CLIENT)
        stream, conn = self._stream, self._conn
        hdrs = [("host", self.origin.netloc), *headers]
        if method not in ("GET", "HEAD") or body:
            hdrs.append(("content-length", str(len(body))))
        out = conn.send(h11.Request(method=method, target=target, headers=hdrs)) or b""
        if body:
            out += conn.send(h11.Data(data=body)) or b""
        out += conn.send(h11.EndOfMessage()) or b""
        await stream.send_all(out)
        status = 0
        reply_headers: tuple[tuple[str, str], ...] = ()
        chunks: list[bytes] = []
        size = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await stream.receive_some(65536)))
            elif isinstance(event, h11.Response):
                status = event.status_code
                reply_headers = tuple((k.decode("latin-1"), v.decode("latin-1"))
                                      for k, v in event.headers)
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.max_body:
                    raise RequestError(f"{target}: response over {self.max_body} bytes")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise RequestError(f"{target}: connection closed mid-response")
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:
            await self.aclose()
        return Reply(status, reply_headers, b"".join(chunks))
