"""The view core: lookups and read plans agree with the bytes that went in."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zosnode.flist.blocks import Compression
from zosnode.flist.browse import follow, lookup, read_range, walk
from zosnode.flist.diff import diff
from zosnode.flist.errors import FlistInputError
from zosnode.flist.extract import BlockReader
from zosnode.flist.format import Kind
from zosnode.flist.pack import BuildOptions, build
from zosnode.flist.store import LocalStore
from zosnode.flist.tree import Content, Node, Tree
from zosnode.flist.view import FlistView

SMALL = BuildOptions(compression=Compression.NONE, chunking="fixed", chunk_size=4096,
                     small_max=1024, pack_min=2048, pack_max=8192)


def _tree(files: dict[bytes, bytes]) -> Tree:
    tree = Tree()
    for path, data in files.items():
        tree.put(tuple(path.split(b"/")), Node(Kind.REG, mode=0o644,
                                               content=Content.of_bytes(data)))
    return tree


class _Mem:
    def __init__(self) -> None:
        self.blocks: dict[str, bytes] = {}

    def sink(self, block: object) -> bool:
        from zosnode.flist.writer import EncodedBlock

        assert isinstance(block, EncodedBlock)
        new = block.id not in self.blocks
        self.blocks[block.id] = block.stored
        return new

    def get(self, ref: object) -> bytes:
        from zosnode.flist.blocks import BlockRef

        assert isinstance(ref, BlockRef)
        return self.blocks[ref.id]


_content = st.lists(
    st.sampled_from([b"\0" * 4096, b"\0" * 100, b"abc", b"x" * 5000]) | st.binary(max_size=3000),
    max_size=8,
).map(b"".join)


@settings(max_examples=60, deadline=None)
@given(_content, st.lists(st.tuples(st.integers(0, 40000), st.integers(0, 20000)), max_size=10))
def test_property_reads_match_content(data: bytes, reads: list[tuple[int, int]]) -> None:
    mem = _Mem()
    flist, _ = build(_tree({b"f": data, b"g": b"small"}), mem.sink, SMALL)
    view = FlistView(flist)
    entry = lookup(view, "/f")
    assert entry.size == len(data)
    reader = BlockReader(mem)
    assert read_range(reader, view, entry, 0, len(data)) == data
    for off, size in reads:
        assert read_range(reader, view, entry, off, size) == data[off : off + size]


def test_lookups(tmp_path: Path) -> None:
    mem = _Mem()
    tree = _tree({b"a/b/c": b"1", b"a/d": b"2"})
    tree.put((b"a", b"l"), Node(Kind.SYMLINK, target=b"b/c"))
    tree.put((b"up",), Node(Kind.SYMLINK, target=b"../../a/d"))
    flist, _ = build(tree, mem.sink, SMALL)
    view = FlistView(flist)
    assert view.root.ino == 1  # FUSE's root inode (pyfuse3.ROOT_INODE)
    c = lookup(view, "/a/b/c")
    assert view.by_ino(c.ino) == c
    assert view.path_of(c) == b"/a/b/c"
    assert [e.name for e in view.children(lookup(view, "a"))] == [b"b", b"d", b"l"]
    assert follow(view, "/a/l") == c
    # '..' above the root stays at the root, as in a chroot.
    assert follow(view, "/up") == lookup(view, "/a/d")
    assert view.nlink(lookup(view, "/a")) == 3
    with pytest.raises(FlistInputError):
        lookup(view, "/a/b/c/d")
    with pytest.raises(FlistInputError):
        view.by_ino(0)
    with pytest.raises(FlistInputError):
        view.plan_read(lookup(view, "/a"), 0, 1)
    assert [p for p, _ in walk(view)] == [
        b"/", b"/a", b"/a/b", b"/a/b/c", b"/a/d", b"/a/l", b"/up"]


def test_symlink_loop_is_refused() -> None:
    mem = _Mem()
    tree = Tree()
    tree.put((b"x",), Node(Kind.SYMLINK, target=b"y"))
    tree.put((b"y",), Node(Kind.SYMLINK, target=b"x"))
    view = FlistView(build(tree, mem.sink, SMALL)[0])
    with pytest.raises(FlistInputError, match="too many symlinks"):
        follow(view, "/x")


def test_diff_counts_what_a_node_must_fetch(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    old = {b"keep": b"k" * 10000, b"change": b"c" * 10000, b"gone": b"g" * 50}
    new = {b"keep": b"k" * 10000, b"change": b"C" * 10000, b"added": b"a" * 50}
    a, _ = build(_tree(old), lambda b: store.put_block(b.stored)[1], SMALL)
    b, _ = build(_tree(new), lambda b: store.put_block(b.stored)[1], SMALL)
    d = diff(FlistView(a), FlistView(b))
    assert d.added == (b"/added",)
    assert d.removed == (b"/gone",)
    assert d.changed == ((b"/change", "content"),)
    held = set(a.blocks())
    expect = [r for i, r in b.blocks().items() if i not in held]
    assert d.fetch_blocks == len(expect) > 0
    assert d.fetch_bytes == sum(r.stored_size for r in expect)
    # "keep" is large (chunked) and unchanged: its blocks are not fetched again.
    keep = lookup(FlistView(b), "/keep").extents
    assert all(getattr(x, "id", None) in held for x in keep)
