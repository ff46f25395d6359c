"""Paths inside an image as text, for the command line (ls, cat) and diff.

A node never resolves a path given as text: the mount walks the tree by
entry (`FlistView.child`), the extract writes it whole. Symlinks followed
here resolve inside the image, never on the host.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from zosnode.flist.errors import FlistInputError
from zosnode.flist.format import Entry, Kind
from zosnode.flist.view import FlistView

if TYPE_CHECKING:  # pure: the reader is passed in
    from zosnode.flist.extract import BlockReader


def lookup(view: FlistView, path: str | bytes) -> Entry:
    """The entry at an absolute or root-relative path; symlinks are not followed."""
    raw = path.encode() if isinstance(path, str) else path
    entry = view.root
    for part in raw.split(b"/"):
        if part in (b"", b"."):
            continue
        found = view.child(entry, part) if entry.kind is Kind.DIR else None
        if found is None:
            raise FlistInputError(f"{raw.decode(errors='replace')!r} is not in the flist")
        entry = found
    return entry


def follow(view: FlistView, path: str | bytes, max_links: int = 40) -> Entry:
    """Like lookup, but symlinks resolve inside the image (never on the host)."""
    raw = path.encode() if isinstance(path, str) else path
    todo = [p for p in raw.split(b"/") if p not in (b"", b".")]
    todo.reverse()
    stack: list[Entry] = [view.root]
    links = 0
    while todo:
        part = todo.pop()
        if part == b"..":
            if len(stack) > 1:
                stack.pop()
            continue
        found = view.child(stack[-1], part) if stack[-1].kind is Kind.DIR else None
        if found is None:
            raise FlistInputError(f"{raw.decode(errors='replace')!r} is not in the flist")
        if found.kind is Kind.SYMLINK:
            links += 1
            if links > max_links:
                raise FlistInputError(f"too many symlinks resolving {raw!r}")
            target = [p for p in found.target.split(b"/") if p not in (b"", b".")]
            if found.target.startswith(b"/"):
                del stack[1:]
            todo.extend(reversed(target))
            continue
        stack.append(found)
    return stack[-1]


def walk(view: FlistView) -> Iterator[tuple[bytes, Entry]]:
    """Every entry with its path, parents before children, names in order."""
    stack: list[tuple[bytes, Entry]] = [(b"/", view.root)]
    while stack:
        path, e = stack.pop()
        yield path, e
        if e.kind is Kind.DIR:
            base = path if path.endswith(b"/") else path + b"/"
            for c in reversed(view.children(e)):
                stack.append((base + c.name, c))


def read_range(reader: BlockReader, view: FlistView, entry: Entry, offset: int,
               size: int) -> bytes:
    """Bytes [offset, offset+size) of a file, each block verified by `reader`."""
    out: list[bytes | memoryview] = []
    for p in view.plan_read(entry, offset, size):
        if p.ref is None:
            out.append(bytes(p.length))
        else:
            out.append(reader.block(p.ref)[p.start : p.start + p.length])
    return b"".join(out)
