"""HTTP for commands and the hub's tools, never run on a node.

`base_url` checks a base URL a user gave (`--hub`, an S3 endpoint);
`run_request` is one request from synchronous code. Both use the one client,
`zosnode.http.client`.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

import trio

from zosnode.http.client import HttpClient, Reply, Timeouts, split_url
from zosnode.http.errors import HttpUsageError


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
        async with HttpClient(timeouts=timeouts, ssl_context=ssl_context) as client:
            return await client.request(method, url, max_size=max_size, body=body,
                                        headers=headers)

    return trio.run(one)
