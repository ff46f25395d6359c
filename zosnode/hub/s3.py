"""The hub's objects in an S3-compatible bucket (path-style requests, SigV4).

Keys map one-to-one to object names under an optional prefix, so the bucket
holds the same layout as a local data directory. Connections are pooled and
bounded; every wait has a deadline (`zosnode.http.client`). Anonymous access
(no credentials) sends unsigned requests, which SeaweedFS allows by default.
"""

from __future__ import annotations

import hashlib
import os
import time
import xml.etree.ElementTree as ET
from urllib.parse import quote, urlsplit

import trio

from zosnode.http.client import HttpPeerError, Reply, Timeouts, split_url
from zosnode.http.command import ToolClient, base_url
from zosnode.hub.sigv4 import Credentials, authorization
from zosnode.hub.storage import StorageError, StorageUsageError, StoredObject

MAX_OBJECT = 64 * 1024 * 1024
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class S3Storage:
    def __init__(self, endpoint: str, bucket: str, prefix: str = "", *,
                 credentials: Credentials | None = None, max_connections: int = 32,
                 timeout_s: float = 30.0) -> None:
        self.endpoint = base_url(endpoint)
        self.origin, base = split_url(self.endpoint)
        if base != "/":
            raise StorageUsageError(f"S3 endpoint {endpoint!r} must not have a path")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.credentials = credentials
        self.timeout_s = timeout_s
        self._client = ToolClient(
            timeouts=Timeouts(connect=timeout_s, head=timeout_s, body_idle=timeout_s),
            per_origin=max_connections)

    @classmethod
    def from_url(cls, url: str, endpoint: str) -> S3Storage:
        """`s3://BUCKET[/PREFIX]`, credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise StorageUsageError(f"{url!r} is not s3://BUCKET[/PREFIX]")
        access = os.environ.get("AWS_ACCESS_KEY_ID")
        secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
        region = os.environ.get("AWS_REGION", "us-east-1")
        creds = Credentials(access, secret, region) if access and secret else None
        return cls(endpoint, parts.netloc, parts.path, credentials=creds)

    def describe(self) -> str:
        where = f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket
        auth = "signed" if self.credentials else "anonymous"
        return f"S3 bucket {where} at {self.endpoint} ({auth})"

    def _path(self, key: str) -> str:
        name = f"{self.prefix}/{key}" if self.prefix else key
        return f"/{self.bucket}/{name}" if key else f"/{self.bucket}"

    async def _call(self, method: str, path: str, *, query: dict[str, str] | None = None,
                    body: bytes = b"") -> Reply:
        query = query or {}
        payload = hashlib.sha256(body).hexdigest()
        headers = {"host": self.origin.host_header, "x-amz-content-sha256": payload,
                   "x-amz-date": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())}
        if self.credentials is not None:
            headers["authorization"] = authorization(
                self.credentials, method, path, query,
                {k: v for k, v in headers.items()}, payload, headers["x-amz-date"])
        target = quote(path, safe="/-_.~")
        if query:
            target += "?" + "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
                                     for k, v in sorted(query.items()))
        # The client sends the same Host it was signed with (the origin's).
        send = {k: v for k, v in headers.items() if k != "host"}
        try:
            reply = await self._client.request(method, self.endpoint + target, body=body,
                                               headers=send, max_size=MAX_OBJECT)
        except HttpPeerError as exc:
            raise StorageError(f"S3 {method} {path}: {exc}") from None
        if reply.status >= 500 or reply.status in (401, 403):
            raise StorageError(f"S3 {method} {path}: HTTP {reply.status} "
                               f"{reply.body[:200].decode('utf-8', 'replace')}")
        return reply

    async def prepare(self) -> None:
        """Create the bucket if it does not exist yet."""
        # Replicas starting together race to create it: SeaweedFS answers
        # one of them 500, so look again before giving up.
        for attempt in range(10):
            try:
                if (await self._call("HEAD", self._path(""))).status == 200:
                    return
                reply = await self._call("PUT", self._path(""))
                if reply.status in (200, 409):
                    return
                failure = StorageError(f"S3 create bucket {self.bucket}: HTTP {reply.status}")
            except StorageError as exc:
                failure = exc
            if attempt == 9:
                raise failure
            await trio.sleep(min(2.0, 0.2 * (attempt + 1)))

    async def get(self, key: str) -> StoredObject | None:
        reply = await self._call("GET", self._path(key))
        if reply.status == 404:
            return None
        if reply.status != 200:
            raise StorageError(f"S3 GET {key}: HTTP {reply.status}")
        return StoredObject(key, len(reply.body), reply.body)

    async def exists(self, key: str) -> bool:
        reply = await self._call("HEAD", self._path(key))
        if reply.status not in (200, 404):
            raise StorageError(f"S3 HEAD {key}: HTTP {reply.status}")
        return reply.status == 200

    async def put(self, key: str, data: bytes) -> None:
        # One PUT: S3 makes an object visible whole or not at all.
        reply = await self._call("PUT", self._path(key), body=data)
        if reply.status != 200:
            raise StorageError(f"S3 PUT {key}: HTTP {reply.status}")

    async def list(self, prefix: str) -> list[str]:
        folder = f"{self.prefix}/{prefix}/" if self.prefix else f"{prefix}/"
        names: set[str] = set()
        token: str | None = None
        for _page in range(10_000):
            query = {"list-type": "2", "prefix": folder, "delimiter": "/"}
            if token:
                query["continuation-token"] = token
            reply = await self._call("GET", self._path(""), query=query)
            if reply.status == 404:
                return []
            if reply.status != 200:
                raise StorageError(f"S3 list {prefix}: HTTP {reply.status}")
            try:
                doc = ET.fromstring(reply.body)
            except ET.ParseError as exc:
                raise StorageError(f"S3 list {prefix}: bad XML: {exc}") from None
            for el in doc.iter(f"{_NS}Key"):
                names.add((el.text or "").removeprefix(folder))
            for el in doc.iter(f"{_NS}CommonPrefixes"):
                p = el.find(f"{_NS}Prefix")
                if p is not None and p.text:
                    names.add(p.text.removeprefix(folder).rstrip("/"))
            truncated = doc.find(f"{_NS}IsTruncated")
            nxt = doc.find(f"{_NS}NextContinuationToken")
            if truncated is None or truncated.text != "true" or nxt is None:
                break
            token = nxt.text
        return sorted(n for n in names if n and "/" not in n and not n.startswith("."))

    async def aclose(self) -> None:
        await self._client.aclose()
