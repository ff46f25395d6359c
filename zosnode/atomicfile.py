"""Whole-or-nothing writes, the one way zosnode puts a file or a tree in place.

A crash leaves at most a `.tmp-` file. Not overwriting takes a hard link, which fails if the
name exists even against a racing writer. `tempfile` names (O_EXCL, O_NOFOLLOW, random): nothing
planted beside can redirect a write. Missing parents are the caller's decision."""

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

TMP_PREFIX = ".tmp-"  # of every temporary name: one found after a crash may be deleted

StrPath = str | os.PathLike[str]


def _parent(path: StrPath) -> str:
    return os.path.dirname(os.fspath(path)) or "."


@contextmanager
def open_atomic(path: StrPath, *, mode: int = 0o644, overwrite: bool = True,
                durable: bool = True) -> Iterator[BinaryIO]:
    """A file to write `path` through: whole when the block ends, else never."""
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
            dir_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_atomic(path: StrPath, data: bytes, *, mode: int = 0o644, overwrite: bool = True,
                 durable: bool = True) -> None:
    """Write `data` to `path` atomically; FileExistsError if `overwrite` is off and it exists."""
    with open_atomic(path, mode=mode, overwrite=overwrite, durable=durable) as f:
        f.write(data)


@contextmanager
def new_tree(path: StrPath) -> Iterator[str]:
    """A temporary directory (0700) renamed to `path` at the end (OSError if `path` became a
    file or a non-empty directory), deleted on an error. No fsync: trees are rebuildable."""
    tmp = tempfile.mkdtemp(prefix=TMP_PREFIX, dir=_parent(path))
    try:
        yield tmp
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_tree(path: StrPath) -> None:
    """Delete the tree at `path` (if there), renamed aside first: no reader sees it half gone."""
    aside = tempfile.mkdtemp(prefix=TMP_PREFIX, dir=_parent(path))
    with contextlib.suppress(OSError):
        os.rename(path, os.path.join(aside, "tree"))
    shutil.rmtree(aside, ignore_errors=True)
