"""The pyfuse3 operations over an FlistView: read-only, so the kernel may cache all it likes;
every byte is from a verified block (EIO past the fetcher's deadline); writes are EROFS."""

import errno
import itertools
import os
from collections.abc import Callable
from functools import partial
from typing import Any

import pyfuse3
import trio

from zosnode.errors import ZosError
from zosnode.fetch.source import BlockSource
from zosnode.flist.blocks import BlockRef
from zosnode.flist.errors import FlistError
from zosnode.flist.format import Entry, Kind
from zosnode.flist.view import BLKSIZE, FlistView
from zosnode.mount.readahead import ReadPattern

CACHE_TIMEOUT_S = 86400.0
# Fetched and decoded ahead of a sequential reader: keeps the pipeline and both cores busy.
READAHEAD_BYTES = 16 * 1024 * 1024
MAX_READ = 1024 * 1024  # the largest request the kernel sends (mount.service)


class FlistFS(pyfuse3.Operations):
    def __init__(self, view: FlistView, source: BlockSource, *,
                 readahead_bytes: int = READAHEAD_BYTES,
                 spawn: Callable[[Callable[[], Any]], None] | None = None) -> None:
        super().__init__()
        self.view = view
        self.source = source
        self.readahead_bytes = readahead_bytes
        self._spawn = spawn  # readahead, in the mount service's nursery
        self._handles: dict[int, tuple[Entry, ReadPattern]] = {}
        self._fh = itertools.count(1)
        self._warming: set[str] = set()
        # pyfuse3 copies a read's answer before any other task runs: one buffer serves all.
        self._joined = bytearray(MAX_READ)
        self.read_errors = 0

    def _entry(self, ino: int) -> Entry:
        try:
            return self.view.by_ino(ino)
        except FlistError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None

    def _attr(self, entry: Entry) -> pyfuse3.EntryAttributes:
        out = pyfuse3.EntryAttributes()  # generation 0: inode numbers are never reused
        for name, value in self.view.stat(entry).items():
            setattr(out, name, value)
        out.entry_timeout = out.attr_timeout = CACHE_TIMEOUT_S
        return out

    async def lookup(self, parent_inode: int, name: bytes, ctx: Any) -> pyfuse3.EntryAttributes:
        parent = self._entry(parent_inode)
        if name == b".":
            return self._attr(parent)
        if name == b"..":  # the root's parent is the root
            return self._attr(self.view.entries[parent.parent or 0])
        if parent.kind is not Kind.DIR:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        child = self.view.child(parent, name)
        if child is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attr(child)

    async def getattr(self, inode: int, ctx: Any) -> pyfuse3.EntryAttributes:
        return self._attr(self._entry(inode))

    async def readlink(self, inode: int, ctx: Any) -> bytes:
        e = self._entry(inode)
        if e.kind is not Kind.SYMLINK:
            raise pyfuse3.FUSEError(errno.EINVAL)
        return e.target

    async def getxattr(self, inode: int, name: bytes, ctx: Any) -> bytes:
        for n, v in self.view.resolve(self._entry(inode)).xattrs:
            if n == name:
                return v
        raise pyfuse3.FUSEError(pyfuse3.ENOATTR)

    async def listxattr(self, inode: int, ctx: Any) -> list[bytes]:
        return [n for n, _ in self.view.resolve(self._entry(inode)).xattrs]

    async def statfs(self, ctx: Any) -> pyfuse3.StatvfsData:
        st = pyfuse3.StatvfsData()  # zeroed: no block or inode is free
        st.f_bsize = st.f_frsize = BLKSIZE
        st.f_blocks = (sum(e.size for e in self.view.entries) + BLKSIZE - 1) // BLKSIZE
        st.f_files = len(self.view.entries)
        st.f_namemax = 255
        return st

    async def opendir(self, inode: int, ctx: Any) -> int:
        e = self._entry(inode)
        if e.kind is not Kind.DIR:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return inode

    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        children = self.view.children(self._entry(fh))
        for i, c in enumerate(children[start_id:], start_id):  # start_id: a stable index
            if not pyfuse3.readdir_reply(token, c.name, self._attr(c), i + 1):
                return

    async def releasedir(self, fh: int) -> None:
        pass

    async def open(self, inode: int, flags: int, ctx: Any) -> pyfuse3.FileInfo:
        e = self.view.resolve(self._entry(inode))
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
            raise pyfuse3.FUSEError(errno.EROFS)
        if e.kind is not Kind.REG:
            raise pyfuse3.FUSEError(errno.EISDIR if e.kind is Kind.DIR else errno.EINVAL)
        fh = next(self._fh)
        self._handles[fh] = (e, ReadPattern(self.readahead_bytes))
        return pyfuse3.FileInfo(fh=fh, keep_cache=True)

    async def read(self, fh: int, off: int, size: int) -> bytes | memoryview:  # type: ignore[override]
        # <= 1 MiB: a view of a verified decoded block (libfuse copies it), or of two joined.
        if fh not in self._handles:
            raise pyfuse3.FUSEError(errno.EBADF)
        entry, pattern = self._handles[fh]
        pieces = self.view.plan_read(entry, off, size)
        # Observed as the request comes: readahead requests are in order, answers need not be.
        ahead = pattern.observe(off, sum(p.length for p in pieces), entry.size)
        if ahead is not None and self._spawn is not None:
            self._read_ahead(entry, ahead[0], ahead[1])
        try:
            views = await self.source.views([(p.ref, p.start, p.length) for p in pieces])
        except (ZosError, OSError):  # unavailable, refused by its hash, or the cache failed
            self.read_errors += 1
            raise pyfuse3.FUSEError(errno.EIO) from None
        if len(views) == 1:
            return views[0]
        n = sum(len(v) for v in views)
        out = memoryview(self._joined)[:n] if n <= MAX_READ else memoryview(bytearray(n))
        at = 0
        for v in views:
            out[at : at + len(v)] = v
            at += len(v)
        return out

    def _read_ahead(self, entry: Entry, start: int, end: int) -> None:
        for p in self.view.plan_read(entry, start, end - start):
            ref = p.ref  # a block seen twice is warming already, or hot
            if ref is not None and ref.id not in self._warming and not self.source.is_hot(ref.id):
                self._warming.add(ref.id)
                assert self._spawn is not None
                self._spawn(partial(self._warm, ref))

    async def _warm(self, ref: BlockRef) -> None:
        # A hint: a failure shows when the block is really read. Decoded: the read finds it.
        try:
            with trio.move_on_after(self.source.fetcher.deadline_s):
                await self.source.decoded(ref, record=False)
        except (ZosError, OSError):
            pass
        finally:
            self._warming.discard(ref.id)

    async def release(self, fh: int) -> None:
        self._handles.pop(fh, None)

    async def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise pyfuse3.FUSEError(errno.EROFS)

    setattr = setxattr = removexattr = write = create = mkdir = mknod = _read_only
    symlink = link = unlink = rmdir = rename = _read_only

