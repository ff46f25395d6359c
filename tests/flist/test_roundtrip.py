"""Directory and tarball -> flist -> extracted tree, identical byte for byte and
attribute for attribute, checked in Python and with real tools."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.flist.trees import assert_same_tree
from zosnode.flist.blocks import Compression
from zosnode.flist.browse import follow, lookup, read_range
from zosnode.flist.builder import build_from
from zosnode.flist.extract import extract
from zosnode.flist.format import Kind, decode, flist_id
from zosnode.flist.pack import BuildOptions
from zosnode.flist.store import LocalStore
from zosnode.flist.view import FlistView
from zosnode.flist.writer import encode

ROOT = os.geteuid() == 0


def _tar_listing(root: Path) -> list[str]:
    out = subprocess.run(
        ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--sort=name",
         "--full-time", "-C", str(root), "-cvvf", "/dev/null", "."],
        check=True, capture_output=True, text=True, errors="surrogateescape",
    ).stdout
    return out.splitlines()


def _stat_listing(root: Path) -> list[str]:
    # stat(1): type+mode (hex), owner, size, links, mtime with ns, device numbers.
    out = subprocess.run(
        ["find", ".", "-exec", "stat", "--printf", "%n %f %u %g %s %h %.9Y %t %T\\n", "{}", "+"],
        cwd=root, check=True, capture_output=True, text=True, errors="surrogateescape",
    ).stdout
    return sorted(out.split("\n"))


def _roundtrip(src: Path, store: LocalStore, dst: Path, options: BuildOptions) -> FlistView:
    flist, _ = build_from(str(src), store, options)
    data = encode(flist)
    view = FlistView(decode(data))
    extract(view, store, dst)
    return view


@pytest.mark.parametrize(
    "options",
    [
        BuildOptions(),
        BuildOptions(compression=Compression.NONE),
        BuildOptions(compression=Compression.LZMA, encrypt=True),
    ],
    ids=["zlib", "plain", "lzma-encrypted"],
)
def test_directory_round_trip(rich_tree: Path, store: LocalStore, tmp_path: Path,
                              options: BuildOptions) -> None:
    if not ROOT:
        pytest.skip("needs root to create device nodes and set owners (CI runs as root)")
    out = tmp_path / "out"
    view = _roundtrip(rich_tree, store, out, options)
    assert_same_tree(rich_tree, out)
    # diff -r cannot compare device nodes; compare everything else with it.
    res = subprocess.run(
        ["diff", "-r", "--no-dereference", "-x", "null", "-x", "loop9", "-x", "fifo",
         str(rich_tree), str(out)], capture_output=True, text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert _tar_listing(rich_tree) == _tar_listing(out)
    assert _stat_listing(rich_tree) == _stat_listing(out)
    # The sparse file stays sparse: zero runs become holes (whole fixed chunks,
    # or runs of 64 KiB and more inside content-defined ones), so at most one
    # chunk's worth is written out of 12 MiB.
    st = os.stat(out / "sparse.img")
    assert st.st_blocks * 512 <= 1024 * 1024 + 8192
    kinds = {e.kind for e in view.entries}
    assert kinds == set(Kind)


def test_reproducible_and_deduplicated(rich_tree: Path, tmp_path: Path) -> None:
    a = LocalStore(tmp_path / "a")
    b = LocalStore(tmp_path / "b")
    f1, s1 = build_from(str(rich_tree), a)
    f2, s2 = build_from(str(rich_tree), b)
    assert flist_id(encode(f1)) == flist_id(encode(f2))
    assert s1.new_bytes > 0
    f3, s3 = build_from(str(rich_tree), a)
    assert s3.new_blocks == 0 and s3.new_bytes == 0 and s3.reused_bytes == s1.new_bytes
    assert encode(f3) == encode(f1)
    # large.bin and its copy share every block.
    view = FlistView(f1)
    large = view.resolve(lookup(view, "/large.bin"))
    assert large.extents == lookup(view, "/dir/large-copy.bin").extents


def test_encrypted_blocks_hide_plaintext(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    secret = b"TOP-SECRET-MARKER " * 4000
    (src / "secret").write_bytes(secret)
    (src / "other").write_bytes(b"TOP-SECRET-MARKER small")
    store = LocalStore(tmp_path / "s")
    build_from(str(src), store, BuildOptions(compression=Compression.NONE, encrypt=True))
    blobs = [p.read_bytes() for p in (tmp_path / "s" / "blocks").rglob("*") if p.is_file()]
    assert blobs
    assert not any(b"TOP-SECRET" in blob for blob in blobs)
    # Convergent: the same input encrypts to the same blocks in another store.
    again = LocalStore(tmp_path / "s2")
    build_from(str(src), again, BuildOptions(compression=Compression.NONE, encrypt=True))
    assert sorted(p.name for p in (tmp_path / "s2" / "blocks").rglob("*") if p.is_file()) == \
        sorted(p.name for p in (tmp_path / "s" / "blocks").rglob("*") if p.is_file())


@pytest.mark.parametrize("compress", ["", "z", "J"], ids=["tar", "tar.gz", "tar.xz"])
def test_tarball_round_trip(rich_tree: Path, store: LocalStore, tmp_path: Path,
                            compress: str) -> None:
    if not ROOT:
        pytest.skip("needs root to create device nodes and set owners (CI runs as root)")
    tarball = tmp_path / "image.tar"
    subprocess.run(
        ["tar", f"-c{compress}f", str(tarball), "--format=posix", "--xattrs",
         "--xattrs-include=*", "--numeric-owner", "-C", str(rich_tree), "."],
        check=True,
    )
    out = tmp_path / "out"
    _roundtrip(tarball, store, out, BuildOptions())
    ref = tmp_path / "ref"
    ref.mkdir()
    subprocess.run(
        ["tar", "-xpf", str(tarball), "--xattrs", "--xattrs-include=*", "--numeric-owner",
         "-C", str(ref)], check=True,
    )
    # GNU tar's own extraction is the reference (it keeps sub-second mtimes via pax).
    assert_same_tree(ref, out)
    assert _tar_listing(ref) == _tar_listing(out)


def test_cat_and_plan_read(rich_tree: Path, store: LocalStore) -> None:
    from zosnode.flist.extract import BlockReader

    flist, _ = build_from(str(rich_tree), store)
    view = FlistView(flist)
    reader = BlockReader(store)
    data = (rich_tree / "large.bin").read_bytes()
    entry = lookup(view, "/large.bin")
    for off, size in [(0, 10), (1024 * 1024 - 5, 10), (len(data) - 3, 100), (len(data), 5),
                      (123_456, 2 * 1024 * 1024)]:
        assert read_range(reader, view, entry, off, size) == data[off : off + size]
    sparse = lookup(view, "/sparse.img")
    got = read_range(reader, view, sparse, 5 * 1024 * 1024 - 2, 10)
    assert got == b"\0\0middle\0\0"
    assert follow(view, "/link-rel") == lookup(view, "/small.txt")
    assert view.nlink(lookup(view, "/small.txt")) == 2
