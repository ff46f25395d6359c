"""HTTP for commands and the hub's tools, never run on a node.

`ToolClient` is the one client (`zosnode.http.client`) with any method and
every status an answer (the hub's tools PUT, HEAD and POST; a node only GETs
and POSTs its heartbeats). `base_url` checks a base URL a user gave (`--hub`,
an S3 endpoint); `run_request` is one request from synchronous code.
"""

import ssl
from collections.abc import Container, Mapping
from contextlib import aclosing
from urllib.parse import urlsplit

import trio

from zosnode.http.client import HttpClient, Reply, Timeouts, split_url
from zosnode.http.errors import HttpUsageError

# `request` takes every status unless told otherwise: the caller reads it.
ANY_STATUS: Container[int] = range(100, 600)


class ToolClient(HttpClient):
    async def request(
        self,
        method: str,
        url: str,
        *,
        max_size: int,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        ok: Container[int] = ANY_STATUS,
        timeouts: Timeouts | None = None,
    ) -> Reply:
        """Any method: every status is an answer unless `ok` says which are (others
        raise `HttpStatusError`). Same pool, deadlines, byte-progress rule and
        response cap as `get`. A HEAD, 204 or 304 reply has an empty body.
        """
        if not (method.isascii() and method.isalpha() and method.isupper()):
            raise HttpUsageError(f"bad method {method[:20]!r}")
        own = []
        if body or method not in ("GET", "HEAD"):
            own.append(("Content-Length", str(len(body))))
        return await self._send(method, url, own, headers, max_size, None, body, ok, timeouts)


def base_url(url: str) -> str:
    """A base URL a user gave (`--hub`, an S3 endpoint), without its trailing slash:
    http(s)://HOST[:PORT][/PATH], no query, no fragment. Paths are appended to it."""
    try:
        parts = urlsplit(url)
        split_url(url)
    except HttpUsageError:
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or parts.query \
            or parts.fragment or "@" in parts.netloc:
        raise HttpUsageError(f"{url!r} is not an http://HOST[:PORT][/PATH] URL (or https://)")
    return url.rstrip("/")


def run_request(
    method: str,
    url: str,
    *,
    max_size: int,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    timeouts: Timeouts | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Reply:
    """One request from synchronous code (a CLI command): a client of its own in a
    trio run of its own, closed after. Every status is returned; errors as `request`."""

    async def one() -> Reply:
        async with aclosing(ToolClient(timeouts=timeouts, ssl_context=ssl_context)) as client:
            return await client.request(method, url, max_size=max_size, body=body,
                                        headers=headers)

    return trio.run(one)
