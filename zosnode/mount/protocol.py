"""The agent / FUSE mount child messages (sans-IO; docs/datapath.md): a 4-byte big-endian length,
a canonical CBOR map named by "type"; bad framing, fields, values refused; no text matched."""

import re
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any, Self

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


def _path(name: str, value: object) -> None:
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value \
            or len(value) > MAX_PATH:
        raise ProtocolUsageError(f"{name} must be an absolute path of at most {MAX_PATH} bytes")


def _int(name: str, value: object, lo: int = 1, hi: int = 2**63 - 1) -> None:
    if type(value) is not int or not lo <= value <= hi:
        raise ProtocolUsageError(f"{name} must be an integer in {lo}..{hi}")


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
        _int("cache_bytes", self.cache_bytes)
        _int("block_deadline_ms", self.block_deadline_ms, hi=24 * 3600 * 1000)
        _int("hot_bytes", self.hot_bytes)
        for flag in ("durable", "prefetch"):
            if not isinstance(getattr(self, flag), bool):
                raise ProtocolUsageError(f"{flag} must be a boolean")


@dataclass(frozen=True)
class Ready:
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
    def of(cls, kind: FailureKind, message: str) -> Self:
        """A failure whose message is cut to fit (messages come from exceptions)."""
        return cls(kind, (" ".join(message.split()) or "(no detail)")[:MAX_MESSAGE])


COUNTS = ("hits", "misses", "fetches", "corrupt", "write_errors", "discarded")  # CacheStats'


@dataclass(frozen=True)
class CacheCounts:
    hits: int
    misses: int
    fetches: int
    corrupt: int
    write_errors: int
    discarded: int

    def __post_init__(self) -> None:
        for name in COUNTS:
            _int(name, getattr(self, name), 0)


Report = Ready | Failure | CacheCounts
Message = MountRequest | Report
_TYPES: dict[str, type[Message]] = {"mount": MountRequest, "ready": Ready, "failure": Failure,
                                    "counts": CacheCounts}
_TAGS = {cls: tag for tag, cls in _TYPES.items()}


def _encode(message: Message, cap: int, **extra: object) -> bytes:
    body: dict[str, Any] = {"type": _TAGS[type(message)]}
    for f in fields(message):
        value = getattr(message, f.name)
        body[f.name] = list(value) if isinstance(value, tuple) else \
            value.value if isinstance(value, Enum) else value
    payload = canonical.dumps(body | extra)
    if len(payload) > cap:
        raise ProtocolUsageError(f"a {len(payload)}-byte message is over the {cap}-byte cap")
    return len(payload).to_bytes(HEADER, "big") + payload


def encode_request(request: MountRequest) -> bytes:
    return _encode(request, MAX_REQUEST, v=VERSION)


def encode_report(report: Report) -> bytes:
    return _encode(report, MAX_REPORT)


def _decode(payload: bytes, cap: int, *want: str) -> Message:
    """The message in `payload` if its type is one of `want`, with exactly its own fields."""
    try:
        value = canonical.loads(payload, max_size=cap, max_depth=2)
    except canonical.CanonicalError as exc:
        raise ProtocolRefused(f"not one canonical message: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolRefused("a message is a map")
    kind = value.pop("type", None)
    if kind not in want:
        raise ProtocolRefused(f"unexpected message type {kind!r}")
    cls = _TYPES[kind]
    names = [f.name for f in fields(cls)]
    if kind == "mount":
        version = value.pop("v", None)
        if type(version) is not int or version != VERSION:
            raise ProtocolRefused(f"request version {version!r} is not {VERSION}")
    if set(value) != set(names):
        raise ProtocolRefused(f"{kind!r} message: fields {sorted(map(str, value))} "
                              f"are not {sorted(names)}")
    # The two fields whose wire form differs; a wrong one is left to the message's check.
    if isinstance(value.get("hubs"), list):
        value["hubs"] = tuple(value["hubs"])
    if isinstance(value.get("kind"), str):
        value["kind"] = FailureKind._value2member_map_.get(value["kind"], value["kind"])
    try:
        return cls(**value)
    except ProtocolUsageError as exc:
        raise ProtocolRefused(f"{kind} message: {exc}") from None


def _header(data: bytes | bytearray, cap: int) -> int:
    """The size a frame's header announces, refused from the header alone if over `cap`."""
    size = int.from_bytes(data[:HEADER], "big")
    if size > cap:
        raise ProtocolRefused(f"a {size}-byte frame is over the {cap}-byte cap")
    return size


def decode_request(data: bytes) -> MountRequest:
    """The one request frame that is the whole of `data` (the child's stdin)."""
    size = _header(data, MAX_REQUEST) if len(data) >= HEADER else None
    if size is None or len(data) < HEADER + size:
        raise ProtocolRefused(f"truncated: {len(data)} bytes, not one whole request frame")
    if len(data) > HEADER + size:
        raise ProtocolRefused(f"{len(data) - HEADER - size} bytes after the frame")
    request = _decode(data[HEADER:], MAX_REQUEST, "mount")
    assert isinstance(request, MountRequest)
    return request


class ReportReader:
    """The agent's side: `Ready` or `Failure`, then any `CacheCounts` and one `Failure` at most."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.ready = self.failed = False
        self._broken: ProtocolRefused | None = None  # a violation, or a frame eof() cut: for good

    def feed(self, data: bytes) -> list[Report]:
        if self._broken is not None:
            raise self._broken
        self._buf += data
        out: list[Report] = []
        try:
            while len(self._buf) >= HEADER:
                end = HEADER + _header(self._buf, MAX_REPORT)
                if len(self._buf) < end:
                    break
                report = _decode(bytes(self._buf[HEADER:end]), MAX_REPORT,
                                 "ready", "failure", "counts")
                del self._buf[:end]
                out.append(self._accept(report))
        except ProtocolRefused as exc:
            self._broken = exc
            raise
        return out

    def _accept(self, report: Message) -> Report:
        assert not isinstance(report, MountRequest)
        if self.failed:
            raise ProtocolRefused("a report after a failure")
        if isinstance(report, Ready) and self.ready:
            raise ProtocolRefused("ready twice")
        if isinstance(report, CacheCounts) and not self.ready:
            raise ProtocolRefused("cache counts before ready")
        self.ready |= isinstance(report, Ready)
        self.failed = isinstance(report, Failure)
        return report

    def eof(self) -> None:
        if self._broken is None and self._buf:
            self._broken = ProtocolRefused(f"truncated: the pipe closed {len(self._buf)} "
                                           "bytes into a report")
        if self._broken is not None:
            raise self._broken
