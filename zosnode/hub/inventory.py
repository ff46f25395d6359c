"""Every object a store holds, with its size and age, and deleting one: what the
maintenance commands (`hub gc`, `hub verify`, `hub mirror`) need beyond the
`Storage` interface the hub serves from.

Kept apart from `Storage` because the hub itself never lists recursively nor
deletes: only an operator's maintenance run does. Both backends:

- a directory (`LocalStorage`): a walk of the layout's folders; the age is the
  file's mtime (set when it was written whole by `zosnode.atomicfile`);
  temporary `.tmp-` names are not objects;
- a bucket (`S3Storage`): ListObjectsV2 without a delimiter under the store's
  prefix, continuation tokens followed; the age is LastModified.
"""

from __future__ import annotations

import calendar
import functools
import os
import stat as stat_mod
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import trio

from zosnode import layout
from zosnode.hub import paths
from zosnode.hub.s3 import S3Storage
from zosnode.hub.storage import LocalStorage, Storage, StorageError

# The layout's folders, in the order a copy must follow so that nothing
# points at what is not there yet: content first, pointers last.
FOLDERS = (layout.BLOCKS, layout.FLISTS, layout.ROOTS, layout.CHANNELS, paths.TAGS,
           paths.BOOT)
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
# A bucket may answer a passing 500 ("please try again": SeaweedFS does, right
# after a volume is added); every operation here is idempotent, so it is retried.
RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0)
T = TypeVar("T")


async def retrying(storage: Storage, op: Callable[[], Awaitable[T]]) -> T:
    """`op()`, again after a short pause when a bucket fails (a directory is not retried)."""
    for delay in RETRY_DELAYS_S:
        try:
            return await op()
        except StorageError:
            if not isinstance(storage, S3Storage):
                raise
        await trio.sleep(delay)
    return await op()


@dataclass(frozen=True)
class Listed:
    """One stored object: its key (a layout path), size in bytes, and mtime (unix s)."""

    key: str
    size: int
    mtime: float


async def walk(storage: Storage, folders: Iterable[str] = FOLDERS) -> list[Listed]:
    """Every object under the given top-level folders, sorted by key."""
    out: list[Listed] = []
    for folder in folders:
        if isinstance(storage, LocalStorage):
            out += _walk_local(storage, folder)
        elif isinstance(storage, S3Storage):
            out += await _walk_s3(storage, folder)
        else:
            raise StorageError(f"cannot list {storage.describe()}")
    return sorted(out, key=lambda o: o.key)


async def stat(storage: Storage, key: str) -> Listed | None:
    """The object at `key` as it is now, or None."""
    if isinstance(storage, LocalStorage):
        try:
            info = os.stat(os.path.join(storage.root, *key.split("/")))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StorageError(f"stat {key}: {exc}") from exc
        return Listed(key, info.st_size, info.st_mtime)
    if isinstance(storage, S3Storage):
        reply = await retrying(storage, lambda: storage._call("HEAD", storage._path(key)))
        if reply.status == 404:
            return None
        if reply.status != 200:
            raise StorageError(f"S3 HEAD {key}: HTTP {reply.status}")
        size = int(reply.headers.get("content-length", "0"))
        modified = reply.headers.get("last-modified", "")
        try:
            mtime = float(calendar.timegm(time.strptime(modified, "%a, %d %b %Y %H:%M:%S GMT")))
        except ValueError:
            mtime = time.time()  # unknown age: treat as new, never as old
        return Listed(key, size, mtime)
    raise StorageError(f"cannot stat in {storage.describe()}")


async def delete(storage: Storage, key: str) -> None:
    """Remove the object at `key`; one already gone is not an error."""
    if isinstance(storage, LocalStorage):
        try:
            os.unlink(os.path.join(storage.root, *key.split("/")))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageError(f"deleting {key}: {exc}") from exc
        return
    if isinstance(storage, S3Storage):
        reply = await retrying(storage, lambda: storage._call("DELETE", storage._path(key)))
        if reply.status not in (200, 204, 404):
            raise StorageError(f"S3 DELETE {key}: HTTP {reply.status}")
        return
    raise StorageError(f"cannot delete in {storage.describe()}")


def _walk_local(storage: LocalStorage, folder: str) -> list[Listed]:
    out: list[Listed] = []
    top = os.path.join(storage.root, folder)
    for here, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = os.path.relpath(here, storage.root).replace(os.sep, "/")
        for name in files:
            if name.startswith("."):
                continue
            try:
                info = os.lstat(os.path.join(here, name))
            except FileNotFoundError:
                continue  # deleted while we walked
            if stat_mod.S_ISREG(info.st_mode):
                out.append(Listed(f"{rel}/{name}", info.st_size, info.st_mtime))
    return out


def _s3_time(text: str) -> float:
    # "2026-12-01T11:33:52.000Z" (the fraction is optional)
    base = text.split(".")[0].rstrip("Z")
    try:
        return float(calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return time.time()  # unknown age: treat as new, never as old


async def _walk_s3(storage: S3Storage, folder: str) -> list[Listed]:
    strip = f"{storage.prefix}/" if storage.prefix else ""
    want = f"{strip}{folder}/"
    out: list[Listed] = []
    token: str | None = None
    for _page in range(100_000):
        query = {"list-type": "2", "prefix": want, "max-keys": "1000"}
        if token:
            query["continuation-token"] = token
        reply = await retrying(storage, functools.partial(
            storage._call, "GET", storage._path(""), query=dict(query)))
        if reply.status == 404:
            return out
        if reply.status != 200:
            raise StorageError(f"S3 list {folder}: HTTP {reply.status}")
        try:
            doc = ET.fromstring(reply.body)
        except ET.ParseError as exc:
            raise StorageError(f"S3 list {folder}: bad XML: {exc}") from None
        for item in doc.iter(f"{_NS}Contents"):
            key = (item.findtext(f"{_NS}Key") or "").removeprefix(strip)
            if not key or key.endswith("/") or any(p.startswith(".") for p in key.split("/")):
                continue
            out.append(Listed(key, int(item.findtext(f"{_NS}Size") or "0"),
                              _s3_time(item.findtext(f"{_NS}LastModified") or "")))
        nxt = doc.findtext(f"{_NS}NextContinuationToken")
        if doc.findtext(f"{_NS}IsTruncated") != "true" or not nxt:
            break
        token = nxt
    return out


async def read(storage: Storage, key: str) -> bytes | None:
    """The whole object at `key` (a local one is read from its file), or None."""
    obj = await retrying(storage, lambda: storage.get(key))
    if obj is None:
        return None
    body = obj.body
    if isinstance(body, bytes):
        return body
    try:
        with open(body.path, "rb") as f:
            f.seek(body.offset)
            return f.read(body.length)
    except FileNotFoundError:
        return None  # deleted between the open and now
    except OSError as exc:
        raise StorageError(f"reading {key}: {exc}") from exc


async def write(storage: Storage, key: str, data: bytes) -> None:
    """Put `data` at `key` whole (retried on a bucket: a put of the same bytes is idempotent)."""
    await retrying(storage, lambda: storage.put(key, data))


async def names(storage: Storage, folder: str) -> list[str]:
    """`storage.list(folder)`, retried on a bucket."""
    return await retrying(storage, lambda: storage.list(folder))
