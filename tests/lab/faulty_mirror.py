"""A fault-injecting mirror that speaks real HTTP/1.1 (trio + h11) on 127.0.0.1.

It serves a DATA directory like nginx does (GET, single byte ranges,
keep-alive) and, for chosen paths, misbehaves: a flipped bit, a stall before
the head or mid-body, a head or body dripped a byte a second, a body cut
short, a 5xx, or the whole server dying mid-body (a hub killed during a
read). It runs inside the test's trio run, so stalls cost nothing under the
mock clock. `stop()` and `restart()` take the listener down and bring it back
on the same port (stopped, it refuses connections). `BlackHole` is an address
whose connects never complete.
"""

from __future__ import annotations

import enum
import re
import socket
import ssl
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import h11
import trio


class Fault(enum.Enum):
    CORRUPT = "corrupt"  # full length, one bit flipped
    STALL_HEAD = "stall-head"  # read the request, never answer
    STALL_BODY = "stall-body"  # head and half the body, then nothing
    TRUNCATE = "truncate"  # head and half the body, then close
    ERROR_500 = "500"
    ERROR_503 = "503"
    DIE = "die"  # half the body, then the whole server goes down
    DRIP = "drip"  # the head, then the body one byte a second
    DRIP_HEAD = "drip-head"  # the head itself one byte a second


@dataclass
class _Rule:
    fault: Fault
    remaining: int | None  # None: forever


_RANGE = re.compile(r"bytes=(\d+)-(\d*)\Z")


class FaultyMirror:
    def __init__(
        self, root: Path, *, latency_s: float = 0.0, tls: ssl.SSLContext | None = None
    ) -> None:
        self.root = root.resolve()
        self.tls = tls
        # Added before every answer: a network's round trip, on loopback.
        self.latency_s = latency_s
        self.port = 0
        self.requests: Counter[str] = Counter()
        self.faults_served: Counter[str] = Counter()
        self._rules: dict[str, _Rule] = {}
        self._default: _Rule | None = None
        self._scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._stopped = trio.Event()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def fail(self, path: str | None, fault: Fault, times: int | None = None) -> None:
        """Misbehave on `path` (None: every path) the next `times` requests."""
        rule = _Rule(fault, times)
        if path is None:
            self._default = rule
        else:
            self._rules[path.lstrip("/")] = rule

    def heal(self) -> None:
        self._rules.clear()
        self._default = None

    async def start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        await nursery.start(self._serve)

    async def stop(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
            await self._stopped.wait()

    async def restart(self) -> None:
        assert self._nursery is not None
        await self._nursery.start(self._serve)

    async def _serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._stopped = trio.Event()
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                tcp = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
                self.port = tcp[0].socket.getsockname()[1]
                listeners: list[trio.abc.Listener[trio.abc.Stream]] = list(tcp)
                if self.tls is not None:
                    listeners = [trio.SSLListener(t, self.tls, https_compatible=True)
                                 for t in tcp]
                async with trio.open_nursery() as inner:
                    await inner.start(trio.serve_listeners, self._handle, listeners)
                    task_status.started()
        finally:
            self._scope = None
            self._stopped.set()

    def _take_fault(self, path: str) -> Fault | None:
        rule = self._rules.get(path) or self._default
        if rule is None:
            return None
        if rule.remaining is not None:
            if rule.remaining <= 0:
                return None
            rule.remaining -= 1
        self.faults_served[rule.fault.value] += 1
        return rule.fault

    async def _handle(self, stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await self._next_request(stream, conn)
                if request is None:
                    return
                keep = await self._respond(stream, conn, request)
                if not keep or conn.our_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError,
                ssl.SSLError):
            return
        finally:
            await trio.aclose_forcefully(stream)

    async def _next_request(
        self, stream: trio.abc.Stream, conn: h11.Connection
    ) -> h11.Request | None:
        request: h11.Request | None = None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return None
                conn.receive_data(bytes(data))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.EndOfMessage):
                return request
            elif isinstance(event, h11.ConnectionClosed):
                return None

    async def _send(
        self, stream: trio.abc.Stream, conn: h11.Connection, *events: h11.Event
    ) -> None:
        for event in events:
            data = conn.send(event)
            if data:
                await stream.send_all(data)

    async def _respond(
        self, stream: trio.abc.Stream, conn: h11.Connection, request: h11.Request
    ) -> bool:
        path = request.target.decode().split("?")[0].lstrip("/")
        self.requests[path] = self.requests[path] + 1
        if self.latency_s:
            await trio.sleep(self.latency_s)
        file = (self.root / path).resolve()
        if request.method != b"GET" or not file.is_relative_to(self.root) or not file.is_file():
            await self._status(stream, conn, 404)
            return True
        body = file.read_bytes()
        status, headers = 200, [("Accept-Ranges", "bytes")]
        for name, value in request.headers:
            if name == b"range":
                m = _RANGE.match(value.decode())
                first = int(m.group(1)) if m else len(body)
                if m is None or first >= len(body):
                    await self._status(stream, conn, 416)
                    return True
                last = min(int(m.group(2)) if m.group(2) else len(body) - 1, len(body) - 1)
                headers.append(("Content-Range", f"bytes {first}-{last}/{len(body)}"))
                body, status = body[first : last + 1], 206
        fault = self._take_fault(path)
        if fault in (Fault.ERROR_500, Fault.ERROR_503):
            await self._status(stream, conn, 500 if fault is Fault.ERROR_500 else 503)
            return True
        if fault is Fault.STALL_HEAD:
            await trio.sleep_forever()
        if fault is Fault.CORRUPT and body:
            flipped = bytearray(body)
            flipped[len(body) // 2] ^= 0x01
            body = bytes(flipped)
        headers.append(("Content-Length", str(len(body))))
        head = h11.Response(status_code=status, headers=headers)
        if fault is Fault.DRIP_HEAD:
            await _drip(stream, conn.send(head) or b"")
            await trio.sleep_forever()
        await self._send(stream, conn, head)
        if fault is Fault.DRIP:
            await _drip(stream, body)
            return False
        if fault in (Fault.STALL_BODY, Fault.TRUNCATE, Fault.DIE):
            await stream.send_all(body[: len(body) // 2])
            if fault is Fault.STALL_BODY:
                await trio.sleep_forever()
            if fault is Fault.DIE:
                await self.stop()
            return False
        await self._send(stream, conn, h11.Data(data=body), h11.EndOfMessage())
        return True

    async def _status(self, stream: trio.abc.Stream, conn: h11.Connection, code: int) -> None:
        await self._send(
            stream, conn,
            h11.Response(status_code=code, headers=[("Content-Length", "0")]),
            h11.EndOfMessage(),
        )


async def _drip(stream: trio.abc.Stream, data: bytes) -> None:
    for i in range(len(data)):
        await stream.send_all(data[i : i + 1])
        await trio.sleep(1.0)


class BlackHole:
    """A loopback address whose TCP connects hang: its accept queue is full.

    Linux drops a SYN to a listener whose accept queue is full, as a
    firewall dropping packets would; one connection fills a queue of 0.
    (A port that drops SYNs by itself cannot be had on loopback.)
    """

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)
        self.port = self._listener.getsockname()[1]
        self._filler = socket.create_connection(("127.0.0.1", self.port), timeout=2.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._filler.close()
        self._listener.close()

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
