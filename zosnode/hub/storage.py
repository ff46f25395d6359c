"""Where the hub keeps objects: one small interface, two backends.

`LocalStorage` is a directory in the shared DATA layout (so any static web
server can mirror it); `zosnode.hub.s3.S3Storage` is a bucket. Keys come
from `zosnode.layout` and are trusted to be well formed here.

Writes are atomic in both: `zosnode.atomicfile` locally; a single PUT
(which S3 makes visible whole or not at all) remotely. A reader never sees a
half-written object.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Protocol

import trio

from zosnode import layout
from zosnode.atomicfile import write_atomic
from zosnode.errors import UsageError, ZosError
from zosnode.http.messages import Body, FileBody

# Objects up to this size are read into memory (one read, no sendfile setup,
# and a mutable object such as a channel manifest is served as one snapshot).
INLINE_MAX = 256 * 1024


class StorageError(ZosError):
    """The backend failed (I/O error, object store refused or unreachable)."""


class StorageUsageError(StorageError, UsageError):
    """We were given a backend that cannot be used (a malformed URL or endpoint)."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    body: Body


class Storage(Protocol):
    async def get(self, key: str) -> StoredObject | None: ...

    async def exists(self, key: str) -> bool: ...

    async def put(self, key: str, data: bytes) -> None: ...

    async def list(self, prefix: str) -> list[str]:
        """Names of the entries directly under `prefix/` (a folder key)."""
        ...

    def describe(self) -> str: ...

    async def prepare(self) -> None:
        """Create what an empty store needs (folders, the bucket)."""
        ...

    async def aclose(self) -> None: ...


class LocalStorage:
    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def describe(self) -> str:
        return f"local directory {self.root}"

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *key.split("/"))

    async def prepare(self) -> None:
        for sub in (layout.BLOCKS, layout.FLISTS, layout.ROOTS, layout.CHANNELS):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)

    async def get(self, key: str) -> StoredObject | None:
        # Local reads are synchronous on purpose: objects are small or sent by
        # sendfile, live in the page cache during a boot storm, and a thread
        # hop per request would cost more than the read.
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StorageError(f"reading {key}: {exc}") from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return None
            if info.st_size > INLINE_MAX:
                return StoredObject(key, info.st_size, FileBody(path, 0, info.st_size))
            # Exactly st_size bytes of this inode (writers rename, never rewrite).
            parts = []
            left = info.st_size
            while left:
                piece = os.read(fd, left)
                if not piece:
                    raise StorageError(f"{key} shrank while being read")
                parts.append(piece)
                left -= len(piece)
        except OSError as exc:
            raise StorageError(f"reading {key}: {exc}") from exc
        finally:
            os.close(fd)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        return StoredObject(key, len(data), data)

    async def exists(self, key: str) -> bool:
        return os.path.isfile(self._path(key))

    async def put(self, key: str, data: bytes) -> None:
        await trio.to_thread.run_sync(self._put_sync, key, data)

    def _put_sync(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_atomic(path, data)
        except OSError as exc:
            raise StorageError(f"writing {key}: {exc}") from exc

    async def list(self, prefix: str) -> list[str]:
        try:
            names = os.listdir(self._path(prefix))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise StorageError(f"listing {prefix}: {exc}") from exc
        return sorted(n for n in names if not n.startswith("."))

    async def aclose(self) -> None:
        return None
