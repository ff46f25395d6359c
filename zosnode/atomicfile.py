"""Whole-or-nothing writes, the one way zosnode puts a file or a tree in place.

A file: a temporary name beside the target, fsync, then rename (or, when the
target must not be overwritten, a hard link, which fails if the name exists
even against a racing writer), then fsync the directory. A reader sees the
old file or the new one, never half of either; a crash leaves at most a
`.tmp-` file behind. `durable=False` skips both fsyncs, for what a crash may
lose anyway (a tmpfs block cache): the rename still keeps readers from
seeing half a file.

A tree: built under a temporary sibling directory and renamed into place
(`new_tree`), or renamed aside before it is deleted (`remove_tree`), so
nobody sees half of one.

Temporary names come from `tempfile` (O_CREAT|O_EXCL|O_NOFOLLOW, random), so
nothing planted beside the target can redirect a write. Nothing here creates
missing parent directories: that is the caller's decision.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

# Every temporary name starts so; a store that finds one after a crash may delete it.
TMP_PREFIX = ".tmp-"

StrPath = str | os.PathLike[str]


def _parent(path: StrPath) -> str:
    return os.path.dirname(os.fspath(path)) or "."


@contextmanager
def open_atomic(
    path: StrPath, *, mode: int = 0o644, overwrite: bool = True, durable: bool = True
) -> Iterator[BinaryIO]:
    """A file to write `path` through: it appears whole when the block ends, else never.

    FileExistsError at the end if `overwrite` is off and `path` exists.
    """
    parent = _parent(path)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(fd, mode)
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
            os.unlink(tmp)
        if durable:
            _fsync_dir(parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_atomic(
    path: StrPath, data: bytes, *, mode: int = 0o644, overwrite: bool = True,
    durable: bool = True,
) -> None:
    """Write `data` to `path` atomically; FileExistsError if `overwrite` is off and it exists."""
    with open_atomic(path, mode=mode, overwrite=overwrite, durable=durable) as f:
        f.write(data)


def copy_atomic(src: StrPath, dest: StrPath, *, mode: int = 0o644) -> None:
    """Copy the file `src` to `dest` atomically (a missing `src` leaves `dest` alone)."""
    with open(src, "rb") as s, open_atomic(dest, mode=mode) as f:
        shutil.copyfileobj(s, f)


@contextmanager
def new_tree(path: StrPath) -> Iterator[str]:
    """A temporary directory (mode 0700) to build `path` in; renamed to `path` at the end.

    On an error the temporary tree is deleted. The rename fails (OSError) if
    `path` has meanwhile become a file or a non-empty directory. Nothing in
    the tree is fsynced: callers build trees they can rebuild (an extracted
    flist, the native runtime).
    """
    tmp = tempfile.mkdtemp(prefix=TMP_PREFIX, dir=_parent(path))
    try:
        yield tmp
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_tree(path: StrPath) -> None:
    """Delete the tree at `path`, first renaming it aside so no reader sees it half gone.

    Someone else having removed it already is not an error.
    """
    aside = tempfile.mkdtemp(prefix=TMP_PREFIX, dir=_parent(path))
    try:
        os.rename(path, os.path.join(aside, "tree"))
    except OSError:
        pass
    shutil.rmtree(aside, ignore_errors=True)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
