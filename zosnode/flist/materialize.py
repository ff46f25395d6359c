"""Write an flist into an empty directory from verified blocks, nothing outside it: names are
the format's, each open at its parent's fd with O_NOFOLLOW (files O_EXCL), links never followed."""

import errno
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Protocol

from zosnode.atomicfile import new_tree
from zosnode.flist.blocks import BlockRef, Buffer
from zosnode.flist.errors import FlistInputError, UnsafeTargetError
from zosnode.flist.format import TYPE_BITS, Entry, Hole, Kind
from zosnode.flist.view import FlistView

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class DecodedBlocks(Protocol):
    def block(self, ref: BlockRef) -> Buffer:
        """The decoded block `ref` names, checked (`decode_block`) before it is returned."""


class _Privilege:
    """Not root: no owners; device nodes and refused xattrs (security.*...) skipped and listed."""

    def __init__(self, view: FlistView, skipped: list[str] | None) -> None:
        self.root = os.geteuid() == 0
        self.view = view
        self.skipped = skipped if skipped is not None else []

    def skip(self, what: str, entry: Entry) -> None:
        self.skipped.append(f"{what} {self.view.path_of(entry).decode(errors='replace')}")

    def setxattrs(self, target: str | bytes | int, entry: Entry, follow: bool = True) -> None:
        for name, value in entry.xattrs:
            try:
                os.setxattr(target, name, value, follow_symlinks=follow)
            except PermissionError:
                if self.root:
                    raise
                self.skip(f"xattr {name.decode(errors='replace')} of", entry)

    def apply(self, target: str | int, entry: Entry) -> None:
        # Owner first (chown clears set-id bits and security.capability), times last.
        if self.root:
            os.chown(target, entry.uid, entry.gid)
        os.chmod(target, entry.mode)
        self.setxattrs(target, entry)
        os.utime(target, ns=(entry.mtime_ns, entry.mtime_ns))


def read_order(view: FlistView) -> list[BlockRef]:
    """The blocks extract asks for, in order (a run of one block once): to fetch ahead."""
    order: list[BlockRef] = []

    def walk(d: Entry) -> None:
        for e in view.children(d):
            if e.kind is Kind.DIR:
                walk(e)
            elif e.kind is Kind.REG:
                for x in e.extents:
                    if not isinstance(x, Hole) and (not order or order[-1].id != x.id):
                        order.append(x)

    walk(view.root)
    return order


def _write_file(fd: int, entry: Entry, reader: DecodedBlocks) -> None:
    pos = 0
    for x in entry.extents:  # their lengths sum to the size; a block's slice is in it
        if isinstance(x, Hole):
            pos += x.length  # left unwritten; truncate sets the size
            continue
        mv = memoryview(reader.block(x))[x.offset : x.offset + x.length]
        while mv:
            n = os.pwrite(fd, mv, pos)
            mv = mv[n:]
            pos += n
    if entry.extents and isinstance(entry.extents[-1], Hole):
        os.ftruncate(fd, entry.size)


def extract_blocks(view: FlistView, blocks: DecodedBlocks, target: str | os.PathLike[str], *,
                   progress: Callable[[int, int], None] | None = None,
                   skipped: list[str] | None = None) -> int:
    """Bytes written to `target`: empty (a mount point: filled in place) or absent (made whole)."""
    tpath = os.path.abspath(os.fspath(target))
    with ExitStack() as stack:
        if not os.path.lexists(tpath):
            try:
                tpath = stack.enter_context(new_tree(tpath))
            except OSError as exc:
                raise FlistInputError(f"cannot create {tpath}: {exc.strerror}") from None
        try:
            root_fd = os.open(tpath, _DIR_FLAGS)
        except OSError as exc:
            raise UnsafeTargetError(
                f"{tpath} is not a directory we can open: {exc.strerror}") from None
        stack.callback(os.close, root_fd)  # before new_tree renames the tree into place
        if os.listdir(root_fd):
            raise UnsafeTargetError(f"{tpath} is not empty")
        return _extract_into(view, blocks, root_fd, progress, _Privilege(view, skipped))


def _extract_into(view: FlistView, reader: DecodedBlocks, root_fd: int,
                  progress: Callable[[int, int], None] | None, priv: _Privilege) -> int:
    total = sum(e.size for e in view.entries)
    written = 0
    # A hardlink to a file not written yet (never, from our builder) is linked at the end.
    deferred: list[Entry] = []
    created: set[int] = set()

    def walk(dir_fd: int, dentry: Entry) -> None:
        nonlocal written
        for e in view.children(dentry):
            name = e.name
            try:
                if e.kind is Kind.DIR:
                    os.mkdir(name, 0o700, dir_fd=dir_fd)
                    with _opened(name, _DIR_FLAGS, dir_fd) as fd:
                        walk(fd, e)
                        priv.apply(fd, e)
                elif e.kind is Kind.REG:
                    with _opened(name, _FILE_FLAGS, dir_fd) as fd:
                        _write_file(fd, e, reader)
                        priv.apply(fd, e)
                    written += e.size
                    if progress is not None:
                        progress(written, total)
                elif e.kind is Kind.SYMLINK:
                    os.symlink(e.target, name, dir_fd=dir_fd)
                    if priv.root:
                        os.chown(name, e.uid, e.gid, dir_fd=dir_fd, follow_symlinks=False)
                    priv.setxattrs(f"/proc/self/fd/{dir_fd}/".encode() + name, e, False)
                    os.utime(name, ns=(e.mtime_ns, e.mtime_ns), dir_fd=dir_fd,
                             follow_symlinks=False)
                elif e.kind is Kind.HARDLINK:
                    if e.link in created:
                        _link(view, root_fd, e, dir_fd)
                    else:
                        deferred.append(e)
                elif e.kind in (Kind.CHR, Kind.BLK) and not priv.root:
                    priv.skip("device", e)
                    continue
                else:
                    os.mknod(name, TYPE_BITS[e.kind] | 0o600, e.rdev, dir_fd=dir_fd)
                    with _opened(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd) as fd:
                        # O_PATH fds do not take fchown/fchmod; /proc/self/fd does.
                        priv.apply(f"/proc/self/fd/{fd}", e)
                created.add(e.index)
            except FileExistsError:
                raise UnsafeTargetError(f"{view.path_of(e)!r} is already in the target") from None
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise UnsafeTargetError(f"{view.path_of(e)!r}: symlink in the way") from None
                raise FlistInputError(f"cannot write {view.path_of(e)!r}: {exc}") from None

    walk(root_fd, view.root)
    for e in deferred:
        assert e.parent is not None
        if e.link not in created:
            priv.skip("hardlink", e)  # its target was skipped (a device, without root)
            continue
        parent = view.entries[e.parent]
        with _open_dir(view, root_fd, parent) as dst_fd:
            _link(view, root_fd, e, dst_fd)
            # Linking touched the directory's times; put them back.
            os.utime(dst_fd, ns=(parent.mtime_ns, parent.mtime_ns))
    priv.apply(root_fd, view.root)
    return written


def _link(view: FlistView, root_fd: int, e: Entry, dst_fd: int) -> None:
    target = view.resolve(e)
    assert target.parent is not None
    with _open_dir(view, root_fd, view.entries[target.parent]) as src_fd:
        os.link(target.name, e.name, src_dir_fd=src_fd, dst_dir_fd=dst_fd, follow_symlinks=False)


@contextmanager
def _opened(name: bytes, flags: int, dir_fd: int) -> Iterator[int]:
    fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
    try:
        yield fd
    finally:
        os.close(fd)


@contextmanager
def _open_dir(view: FlistView, root_fd: int, entry: Entry) -> Iterator[int]:
    """`entry`'s directory, opened from the root a component at a time (O_NOFOLLOW)."""
    with ExitStack() as stack:
        fd = root_fd
        for name in filter(None, view.path_of(entry).split(b"/")):
            fd = stack.enter_context(_opened(name, _DIR_FLAGS, fd))
        yield fd
