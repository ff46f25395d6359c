"""Conditional requests and byte ranges (RFC 9110 §13, §14), as pure code.

The server applies this to every response a handler returns, so every route
gets 304, 206 and 416 right in one place. Invalid Range headers are ignored
(the RFC allows it) rather than refused; only a well-formed range that falls
outside the body is a 416. Multiple ranges are answered with the whole body:
nodes never ask for them and multipart bodies are a needless attack surface.
"""

from dataclasses import replace

from zosnode.http.messages import Body, Request, Response

_MAX_DIGITS = 19  # no offset we serve needs more; bounds int() work


def parse_range(value: str, size: int) -> tuple[int, int] | None | str:
    """Parse a single `bytes=` range against a body of `size` bytes.

    Returns (start, length) when satisfiable, "unsatisfiable" when well
    formed but outside the body, and None when the header is to be ignored.
    """
    unit, sep, spec = value.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    first, last = first.strip(), last.strip()
    for part in (first, last):
        if part and (not part.isascii() or not part.isdigit() or len(part) > _MAX_DIGITS):
            return None
    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0:
            return "unsatisfiable"
        length = min(suffix, size)
        return (size - length, length)
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        return "unsatisfiable"
    end = min(int(last), size - 1) if last else size - 1
    return (start, end - start + 1)


def etag_matches(header: str, etag: str) -> bool:
    """If-None-Match comparison (weak, as the RFC requires for it)."""
    if header.strip() == "*":
        return True
    ours = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == ours for tag in header.split(","))


def _slice(body: Body, start: int, length: int) -> Body:
    if isinstance(body, bytes):
        return body[start : start + length]
    return body.slice(start, length)


def apply(request: Request, response: Response) -> Response:
    """The response to actually send for `request`, given the handler's."""
    if response.status != 200 or request.method not in ("GET", "HEAD"):
        return response
    etag = response.header("etag")
    inm = request.header("if-none-match")
    if etag is not None and inm is not None and etag_matches(inm, etag):
        keep = tuple(
            (k, v) for k, v in response.headers
            if k.lower() in ("etag", "cache-control", "last-modified", "vary")
        )
        return replace(response, status=304, headers=keep, body=b"", ranges=False)
    rng = request.header("range")
    if not response.ranges or rng is None:
        return response
    if_range = request.header("if-range")
    if if_range is not None and (etag is None or if_range.strip() != etag):
        return response
    size = len(response.body)
    parsed = parse_range(rng, size)
    if parsed is None:
        return response
    if parsed == "unsatisfiable":
        return replace(
            response,
            status=416,
            headers=(("content-range", f"bytes */{size}"),),
            body=b"",
            ranges=False,
        )
    assert not isinstance(parsed, str)
    start, length = parsed
    return replace(
        response,
        status=206,
        headers=(
            *response.headers,
            ("content-range", f"bytes {start}-{start + length - 1}/{size}"),
        ),
        body=_slice(response.body, start, length),
    )
