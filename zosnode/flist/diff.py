"""Compare two flists path by path."""

from __future__ import annotations

from dataclasses import dataclass

from zosnode.flist.browse import walk
from zosnode.flist.format import Entry, Kind
from zosnode.flist.stats import fetch_bytes
from zosnode.flist.view import FlistView


@dataclass(frozen=True)
class FlistDiff:
    added: tuple[bytes, ...]
    removed: tuple[bytes, ...]
    changed: tuple[tuple[bytes, str], ...]   # path and what changed
    fetch_blocks: int
    fetch_bytes: int


def _what_changed(a: FlistView, ea: Entry, b: FlistView, eb: Entry) -> str | None:
    ra, rb = a.resolve(ea), b.resolve(eb)
    if ra.kind is not rb.kind:
        return f"type {ra.kind.name.lower()} -> {rb.kind.name.lower()}"
    what = []
    if ra.kind is Kind.REG and ra.extents != rb.extents:
        what.append("content" if ra.size == rb.size else f"size {ra.size} -> {rb.size}")
    if ra.target != rb.target:
        what.append("target")
    if ra.rdev != rb.rdev:
        what.append("rdev")
    if ra.mode != rb.mode:
        what.append(f"mode {ra.mode:o} -> {rb.mode:o}")
    if (ra.uid, ra.gid) != (rb.uid, rb.gid):
        what.append("owner")
    if ra.xattrs != rb.xattrs:
        what.append("xattrs")
    if ra.mtime_ns != rb.mtime_ns and ra.kind is not Kind.DIR:
        what.append("mtime")
    if (ea.kind is Kind.HARDLINK) != (eb.kind is Kind.HARDLINK):
        what.append("hardlink")
    return ", ".join(what) or None


def diff(a: FlistView, b: FlistView) -> FlistDiff:
    pa = dict(walk(a))
    pb = dict(walk(b))
    changed = []
    for path, eb in pb.items():
        ea = pa.get(path)
        if ea is not None:
            what = _what_changed(a, ea, b, eb)
            if what is not None:
                changed.append((path, what))
    nblocks, nbytes = fetch_bytes(a.flist, b.flist)
    return FlistDiff(
        added=tuple(p for p in pb if p not in pa),
        removed=tuple(p for p in pa if p not in pb),
        changed=tuple(changed),
        fetch_blocks=nblocks,
        fetch_bytes=nbytes,
    )
