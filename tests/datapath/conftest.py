"""Fixtures of the data path tests: a DATA directory of blocks and mirrors on it."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from tests.lab.faulty_mirror import FaultyMirror
from zosnode.cache import entry


def cache_entry(seed: int, block: bytes) -> bytes:
    """A block cache entry as `BlockCache` writes one (tests forge them)."""
    return entry.MAGIC + entry.checksum(seed, block) + block


def read_entry(seed: int, block_id: str, data: bytes) -> bytes | memoryview:
    """The block a whole entry holds, checked as the cache checks it."""
    return entry.check(seed, block_id, data[:entry.HEADER], data[entry.HEADER:])


def put_block(data_dir: Path, stored: bytes) -> str:
    bid = hashlib.blake2b(stored, digest_size=32).hexdigest()
    path = data_dir / "blocks" / bid[:2] / bid
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(stored)
    return bid


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    (d / "blocks").mkdir(parents=True)
    (d / "flists").mkdir()
    return d


@pytest.fixture
def blobs(data_dir: Path) -> dict[str, bytes]:
    """A few blocks of assorted sizes in `data_dir`, by id."""
    out = {}
    for size in (1, 1000, 65536, 300_000, 1 << 20):
        stored = os.urandom(size)
        out[put_block(data_dir, stored)] = stored
    return out


@pytest.fixture
async def mirror(data_dir: Path) -> AsyncIterator[FaultyMirror]:
    async with trio.open_nursery() as nursery:
        m = FaultyMirror(data_dir)
        await m.start(nursery)
        yield m
        nursery.cancel_scope.cancel()


@pytest.fixture
async def mirror2(data_dir: Path) -> AsyncIterator[FaultyMirror]:
    async with trio.open_nursery() as nursery:
        m = FaultyMirror(data_dir)
        await m.start(nursery)
        yield m
        nursery.cancel_scope.cancel()


def build_flist(src: Path, data_dir: Path, **build_kw: object) -> tuple[bytes, str]:
    """Build an flist of `src` with the flist layer's builder into the DATA layout."""
    from zosnode.flist.pack import build
    from zosnode.flist.source_dir import tree_from_dir
    from zosnode.flist.store import LocalStore
    from zosnode.flist.writer import encode

    store = LocalStore(data_dir)
    store.init()
    flist, _ = build(tree_from_dir(src), lambda eb: store.put_block(eb.stored)[1], **build_kw)  # type: ignore[arg-type]
    data = encode(flist)
    return data, store.put_flist(data)


def make_tree(root: Path) -> Path:
    """A tree with every entry type, odd attributes and files of many sizes."""
    root.mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc" / "hostname").write_text("zos\n")
    (root / "empty").write_bytes(b"")
    (root / "bin").mkdir(mode=0o755)
    for i, size in enumerate((1, 100, 4095, 4096, 70_000, 200_000, 1 << 20, 3 * (1 << 20) + 17)):
        (root / "bin" / f"f{i}").write_bytes(os.urandom(size))
    with open(root / "sparse", "wb") as f:
        f.write(b"head")
        f.seek(5 * (1 << 20))
        f.write(b"tail")
    (root / "zeros").write_bytes(bytes(2 << 20))
    os.symlink("etc/hostname", root / "link")
    os.symlink("/nonexistent/target", root / "dangling")
    os.link(root / "bin" / "f3", root / "hard")
    os.mkfifo(root / "fifo")
    os.chmod(root / "bin" / "f0", 0o4755)
    os.chmod(root / "etc" / "hostname", 0o600)
    os.setxattr(root / "bin" / "f1", "user.zos", b"value\x00\xff")
    os.setxattr(root / "etc", "user.dir", b"d")
    if os.geteuid() == 0:
        os.mknod(root / "null", 0o666 | 0o020000, os.makedev(1, 3))
        os.chown(root / "bin" / "f2", 1234, 5678)
        os.chown(root / "link", 42, 43, follow_symlinks=False)
    deep = root
    for i in range(20):
        deep = deep / f"d{i}"
    deep.mkdir(parents=True)
    (deep / "leaf").write_text("deep")
    many = root / "many"
    many.mkdir()
    for i in range(300):
        (many / f"n{i:04d}").write_text(str(i))
    os.utime(root / "etc" / "hostname", ns=(1_000_000_123, 1_500_000_000_123_456_789))
    return root
