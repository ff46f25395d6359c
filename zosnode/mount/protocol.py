"""What the node agent and a FUSE mount child say to each other (sans-IO).

The agent starts one child per flist (`zosnode _mount-child FD`). It writes one
`MountRequest` frame on the child's stdin and closes it; the child answers on
the inherited pipe FD with `Ready` once the mount serves, or a `Failure`; after
`Ready` it sends `CacheCounts` whenever its block cache's counts changed (at
most every few seconds, for the heartbeat) and may send one `Failure` (the
mount ended: fatal). Nothing follows a `Failure`.

A frame is a 4-byte big-endian length, then that many bytes of one canonical
CBOR map whose "type" names the message. Decoding refuses a short frame, an
oversize one, trailing bytes, unknown or missing fields and out-of-range
values; no text is ever matched to learn what happened.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

from zosnode import canonical
from zosnode.flist.format import MAX_METADATA
from zosnode.layout import is_hex_id
from zosnode.mount.errors import ProtocolRefused, ProtocolUsageError

VERSION = 1
HEADER = 4
MAX_REQUEST = MAX_METADATA + 64 * 1024  # the flist travels inside the request
MAX_REPORT = 4096
MAX_MESSAGE = 512  # characters of a failure's message
MAX_HUBS = 128  # the command line's hubs, then a manifest's hubs and mirrors (32 each)
MAX_PATH = 4096
_URL = re.compile(r"https?://[^\s\x00]{1,2040}")  # what a manifest accepts


class FailureKind(Enum):
    """Why a child could not serve (or stopped serving): a closed set."""

    REQUEST = "request"  # the request did not decode: the agent's bug or a version skew
    FLIST = "flist"  # the flist bytes are not a valid flist
    MOUNTPOINT = "mountpoint"  # missing, not a directory, already a mount, dead and stuck
    FUSE = "fuse"  # the kernel or libfuse refused the mount (no /dev/fuse, no permission)
    CACHE = "cache"  # the block cache directory cannot be used
    UNMOUNTED = "unmounted"  # after Ready: the mount was taken away from outside
    INTERNAL = "internal"  # anything else: the child's bug


def _path(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value \
            or len(value) > MAX_PATH:
        raise ProtocolUsageError(f"{name} must be an absolute path of at most {MAX_PATH} bytes")
    return value


def _positive(name: str, value: object, hi: int = 2**63 - 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= hi:
        raise ProtocolUsageError(f"{name} must be an integer in 1..{hi}")
    return value


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ProtocolUsageError(f"{name} must be a boolean")
    return value


@dataclass(frozen=True)
class MountRequest:
    """Everything a child needs: the flist itself (already checked against its pin) and where."""

    flist: bytes
    mountpoint: str
    hubs: tuple[str, ...]
    cache_dir: str
    cache_bytes: int
    durable: bool  # fsync cache writes (a disk cache; a tmpfs needs none)
    block_deadline_ms: int  # to get one block from the hubs before a read fails with EIO
    hot_bytes: int  # RAM kept of decoded blocks
    prefetch: bool  # follow the flist's boot-order hint

    def __post_init__(self) -> None:
        if not isinstance(self.flist, bytes) or not 0 < len(self.flist) <= MAX_METADATA:
            raise ProtocolUsageError(f"flist must be 1..{MAX_METADATA} bytes")
        _path("mountpoint", self.mountpoint)
        _path("cache_dir", self.cache_dir)
        if not isinstance(self.hubs, tuple) or not 0 < len(self.hubs) <= MAX_HUBS:
            raise ProtocolUsageError(f"hubs must be a tuple of 1..{MAX_HUBS} URLs")
        for hub in self.hubs:
            if not isinstance(hub, str) or not _URL.fullmatch(hub):
                raise ProtocolUsageError(f"hub {hub!r} is not an http(s) URL")
        _positive("cache_bytes", self.cache_bytes)
        _positive("block_deadline_ms", self.block_deadline_ms, 24 * 3600 * 1000)
        _positive("hot_bytes", self.hot_bytes)
        _flag("durable", self.durable)
        _flag("prefetch", self.prefetch)


@dataclass(frozen=True)
class Ready:
    """The mount at the request's mountpoint serves the flist with this id."""

    flist_id: str

    def __post_init__(self) -> None:
        if not is_hex_id(self.flist_id):
            raise ProtocolUsageError("flist_id must be 64 lowercase hex digits")


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    message: str

    def __post_init__(self) -> None:
        if not isinstance(self.kind, FailureKind):
            raise ProtocolUsageError("kind must be a FailureKind")
        if not isinstance(self.message, str) or len(self.message) > MAX_MESSAGE:
            raise ProtocolUsageError(f"message must be text of at most {MAX_MESSAGE} characters")

    @classmethod
    def of(cls, kind: FailureKind, message: str) -> Failure:
        """A failure whose message is cut to fit (messages come from exceptions)."""
        text = " ".join(message.split()) or "(no detail)"
        return cls(kind, text[:MAX_MESSAGE])


COUNTS = ("hits", "misses", "fetches", "corrupt", "write_errors", "discarded")


@dataclass(frozen=True)
class CacheCounts:
    """The child's block cache counts so far (`zosnode.cache.store.CacheStats`)."""

    hits: int
    misses: int
    fetches: int
    corrupt: int
    write_errors: int
    discarded: int

    def __post_init__(self) -> None:
        for name in COUNTS:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
                raise ProtocolUsageError(f"{name} must be an integer in 0..2^63-1")


Report = Ready | Failure | CacheCounts

# -- encoding -------------------------------------------------------------------------------


def _frame(body: dict[str, Any], cap: int) -> bytes:
    payload = canonical.dumps(body)
    if len(payload) > cap:
        raise ProtocolUsageError(f"a {len(payload)}-byte message is over the {cap}-byte cap")
    return len(payload).to_bytes(HEADER, "big") + payload


def encode_request(request: MountRequest) -> bytes:
    return _frame({
        "type": "mount", "v": VERSION, "flist": request.flist,
        "mountpoint": request.mountpoint, "hubs": list(request.hubs),
        "cache_dir": request.cache_dir, "cache_bytes": request.cache_bytes,
        "durable": request.durable, "block_deadline_ms": request.block_deadline_ms,
        "hot_bytes": request.hot_bytes, "prefetch": request.prefetch,
    }, MAX_REQUEST)


def encode_report(report: Report) -> bytes:
    if isinstance(report, Ready):
        return _frame({"type": "ready", "flist_id": report.flist_id}, MAX_REPORT)
    if isinstance(report, CacheCounts):
        return _frame({"type": "counts", **{n: getattr(report, n) for n in COUNTS}}, MAX_REPORT)
    return _frame({"type": "failure", "kind": report.kind.value, "message": report.message},
                  MAX_REPORT)


# -- decoding -------------------------------------------------------------------------------


def _load(payload: bytes, cap: int) -> dict[Any, Any]:
    try:
        value = canonical.loads(payload, max_size=cap, max_depth=2)
    except canonical.CanonicalError as exc:
        raise ProtocolRefused(f"not one canonical message: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolRefused("a message is a map")
    return value


def _fields(value: dict[Any, Any], *fields: str) -> dict[str, Any]:
    """`value` holds exactly `type` and `fields` (their types: the message's own checks)."""
    if set(value) != set(fields) | {"type"}:
        raise ProtocolRefused(f"{value.get('type')!r} message: fields "
                              f"{sorted(map(str, value))} are not {sorted(fields)}")
    return value


def decode_request(data: bytes) -> MountRequest:
    """The one request frame that is the whole of `data` (the child's stdin)."""
    payload = _one_frame(data, MAX_REQUEST)
    value = _load(payload, MAX_REQUEST)
    if value.get("type") != "mount":
        raise ProtocolRefused(f"expected a mount request, got {value.get('type')!r}")
    _fields(value, "v", *MountRequest.__dataclass_fields__)
    if type(value["v"]) is not int or value["v"] != VERSION:
        raise ProtocolRefused(f"request version {value['v']!r} is not {VERSION}")
    if not isinstance(value["hubs"], list):
        raise ProtocolRefused("mount request: hubs is not a list")
    try:
        return MountRequest(
            flist=value["flist"], mountpoint=value["mountpoint"],
            hubs=tuple(value["hubs"]), cache_dir=value["cache_dir"],
            cache_bytes=value["cache_bytes"], durable=value["durable"],
            block_deadline_ms=value["block_deadline_ms"], hot_bytes=value["hot_bytes"],
            prefetch=value["prefetch"],
        )
    except ProtocolUsageError as exc:
        raise ProtocolRefused(f"mount request: {exc}") from None


def _one_frame(data: bytes, cap: int) -> bytes:
    if len(data) < HEADER:
        raise ProtocolRefused(f"truncated: {len(data)} bytes is not even a frame header")
    size = int.from_bytes(data[:HEADER], "big")
    if size > cap:
        raise ProtocolRefused(f"a {size}-byte frame is over the {cap}-byte cap")
    if len(data) < HEADER + size:
        raise ProtocolRefused(f"truncated: {len(data) - HEADER} of {size} bytes")
    if len(data) > HEADER + size:
        raise ProtocolRefused(f"{len(data) - HEADER - size} bytes after the frame")
    return data[HEADER:]


def decode_report(payload: bytes) -> Report:
    """One report from a frame's payload (without its length header)."""
    value = _load(payload, MAX_REPORT)
    kind = value.get("type")
    try:
        if kind == "ready":
            return Ready(_fields(value, "flist_id")["flist_id"])
        if kind == "failure":
            body = _fields(value, "kind", "message")
            try:
                failure_kind = FailureKind(body["kind"])
            except (ValueError, TypeError):
                raise ProtocolRefused(f"unknown failure kind {body['kind']!r}") from None
            return Failure(failure_kind, body["message"])
        if kind == "counts":
            body = _fields(value, *COUNTS)
            return CacheCounts(**{n: body[n] for n in COUNTS})
    except ProtocolUsageError as exc:
        raise ProtocolRefused(f"{kind} report: {exc}") from None
    raise ProtocolRefused(f"unknown report type {kind!r}")


class ReportReader:
    """The agent's side of the report pipe: bytes in, reports out, in the allowed order.

    `Ready` or `Failure` first; after `Ready` any number of `CacheCounts` and at
    most one `Failure`; nothing after a `Failure`. Any violation, or a frame cut
    short by `eof()`, is `ProtocolRefused`, and the reader stays refused.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.ready = False
        self.failed = False
        self._broken: ProtocolRefused | None = None

    def feed(self, data: bytes) -> list[Report]:
        if self._broken is not None:
            raise self._broken
        self._buf += data
        out: list[Report] = []
        try:
            while len(self._buf) >= HEADER:
                size = int.from_bytes(self._buf[:HEADER], "big")
                if size > MAX_REPORT:
                    raise ProtocolRefused(f"a {size}-byte report is over the {MAX_REPORT} cap")
                if len(self._buf) < HEADER + size:
                    break
                payload = bytes(self._buf[HEADER:HEADER + size])
                del self._buf[:HEADER + size]
                out.append(self._accept(decode_report(payload)))
        except ProtocolRefused as exc:
            self._broken = exc
            raise
        return out

    def _accept(self, report: Report) -> Report:
        if self.failed:
            raise ProtocolRefused("a report after a failure")
        if isinstance(report, Ready):
            if self.ready:
                raise ProtocolRefused("ready twice")
            self.ready = True
        elif isinstance(report, CacheCounts):
            if not self.ready:
                raise ProtocolRefused("cache counts before ready")
        else:
            self.failed = True
        return report

    def eof(self) -> None:
        """The pipe closed: refuse a frame left half-sent."""
        if self._broken is not None:
            raise self._broken
        if self._buf:
            self._broken = ProtocolRefused(f"truncated: the pipe closed {len(self._buf)} "
                                           "bytes into a report")
            raise self._broken
