"""The mutable tree a builder assembles before it is packed into an flist.

Sources (a directory, a tarball, OCI layers) add, replace and remove nodes
here; the packer then walks the finished tree once. A hardlink is the same
`Node` object under two names.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from zosnode.flist.errors import FlistDataError, FormatError
from zosnode.flist.format import MAX_DEPTH, Kind, check_name


@dataclass(frozen=True)
class Content:
    """A regular file's bytes, to be read once by the packer."""

    size: int
    opener: Callable[[], BinaryIO]

    @classmethod
    def of_bytes(cls, data: bytes) -> Content:
        return cls(len(data), lambda: io.BytesIO(data))

    @classmethod
    def of_path(cls, path: str | bytes | os.PathLike[str], size: int) -> Content:
        p = os.fspath(path)
        # O_NOFOLLOW: a file swapped for a symlink under us is not read through.
        return cls(size, lambda: os.fdopen(os.open(p, os.O_RDONLY | os.O_NOFOLLOW), "rb"))


@dataclass(eq=False)
class Node:
    kind: Kind
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    mtime_ns: int = 0
    xattrs: dict[bytes, bytes] = field(default_factory=dict)
    content: Content | None = None
    target: bytes = b""
    rdev: int = 0
    children: dict[bytes, Node] | None = None

    def __post_init__(self) -> None:
        if self.kind is Kind.DIR and self.children is None:
            self.children = {}


def split_path(path: bytes) -> tuple[bytes, ...]:
    """Archive member path -> components; '..' or bad names are the archive's fault."""
    parts = tuple(p for p in path.split(b"/") if p not in (b"", b"."))
    if len(parts) > MAX_DEPTH:
        raise FlistDataError(f"path {path!r} is deeper than {MAX_DEPTH}")
    for p in parts:
        try:
            check_name(p)
        except FormatError as exc:
            raise FlistDataError(f"archive path {path!r}: {exc}") from None
    return parts


class Tree:
    def __init__(self) -> None:
        self.root = Node(Kind.DIR)

    def _dir(self, parts: tuple[bytes, ...], create: bool) -> Node | None:
        node = self.root
        for p in parts:
            assert node.children is not None
            nxt = node.children.get(p)
            if nxt is None or nxt.kind is not Kind.DIR:
                if not create:
                    return None
                # A missing parent (or a non-directory in the way) becomes a plain dir,
                # as tar and overlay filesystems do.
                nxt = Node(Kind.DIR)
                node.children[p] = nxt
            node = nxt
        return node

    def get(self, parts: tuple[bytes, ...]) -> Node | None:
        if not parts:
            return self.root
        parent = self._dir(parts[:-1], create=False)
        if parent is None:
            return None
        assert parent.children is not None
        return parent.children.get(parts[-1])

    def put(self, parts: tuple[bytes, ...], node: Node) -> Node:
        """Place `node` at `parts`; a directory over a directory keeps its children."""
        if not parts:
            if node.kind is not Kind.DIR:
                raise FlistDataError("the root of an image must be a directory")
            node.children = self.root.children
            self.root = node
            return node
        parent = self._dir(parts[:-1], create=True)
        assert parent is not None and parent.children is not None
        old = parent.children.get(parts[-1])
        if old is not None and old.kind is Kind.DIR and node.kind is Kind.DIR:
            node.children = old.children
        parent.children[parts[-1]] = node
        return node

    def remove(self, parts: tuple[bytes, ...]) -> None:
        if not parts:
            return
        parent = self._dir(parts[:-1], create=False)
        if parent is not None and parent.children is not None:
            parent.children.pop(parts[-1], None)
