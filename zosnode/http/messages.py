"""What the HTTP server hands to a handler and what it gets back.

Frozen and validated when built, so a handler cannot produce a response the
server would have to second-guess (a negative status, a header with a
newline, a file slice of negative length).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from zosnode.http.errors import HttpUsageError
from zosnode.http.requesthead import parse_target


@dataclass(frozen=True)
class FileBody:
    """A byte range of a local file, sent without loading it whole."""

    path: str
    offset: int
    length: int

    def __post_init__(self) -> None:
        if self.offset < 0 or self.length < 0:
            raise HttpUsageError(f"bad file range {self.offset}+{self.length}")

    def __len__(self) -> int:
        return self.length

    def slice(self, start: int, length: int) -> FileBody:
        if start < 0 or length < 0 or start + length > self.length:
            raise HttpUsageError(f"slice {start}+{length} outside {self.length}")
        return FileBody(self.path, self.offset + start, length)


Body = bytes | FileBody


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VALUE_BAD = re.compile(r"[\r\n\0]")


def _check_header(name: str, value: str) -> None:
    if _TOKEN.fullmatch(name) is None:
        raise HttpUsageError(f"bad header name {name!r}")
    if _VALUE_BAD.search(value) is not None:
        raise HttpUsageError(f"bad header value for {name}")


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""
    # Path, query and (absolute-form only) authority are derived from the
    # target once, strictly: a target that is not one of the forms a server
    # must answer raises HttpRefused (the peer's fault), so routes never
    # re-parse and never see `//host` or `[` treated as a URL authority.
    path: str = field(init=False)
    query: Mapping[str, str] = field(init=False)
    authority: str | None = field(init=False)

    def __post_init__(self) -> None:
        path, query, authority = parse_target(self.method, self.target)
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "query", query)
        object.__setattr__(self, "authority", authority)

    def header(self, name: str) -> str | None:
        """The first value of a header (names compare case-insensitively)."""
        wanted = name.lower()
        for key, value in self.headers:
            if key == wanted:
                return value
        return None


@dataclass(frozen=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: Body = b""
    # Metrics label chosen by the router: a route pattern, never a raw path,
    # so label cardinality stays bounded whatever clients ask for.
    route: str = "other"
    # Whether Range requests may be honoured on this body.
    ranges: bool = False

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 599:
            raise HttpUsageError(f"bad status {self.status}")
        for name, value in self.headers:
            _check_header(name, value)
            if name.lower() in ("content-length", "transfer-encoding"):
                raise HttpUsageError("framing headers are the server's job")

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None


def text_response(status: int, text: str, *, route: str = "other",
                  headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(
        status,
        (("content-type", "text/plain; charset=utf-8"), *headers),
        (text.rstrip("\n") + "\n").encode(),
        route=route,
    )
