"""Format 1.0 flists (zlib, fixed 1 MiB chunks) stay readable beside 1.1 ones (zstd, CDC).

`fixtures/v1.0-zlib/` is a store written by the 1.0 builder before zstd and
content-defined chunking existed (commit 8231fdc's `zosnode flist create` of
the tree `_old_tree` makes again); it is kept as bytes, so these tests read
what old builds really wrote, not what today's code would write.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.datapath.fuse import require_fuse
from tests.flist.trees import snapshot
from tests.lab.nginx import Nginx, nginx
from zosnode.flist.blocks import Compression
from zosnode.flist.builder import build_from
from zosnode.flist.extract import extract
from zosnode.flist.format import decode, flist_id
from zosnode.flist.store import LocalStore
from zosnode.flist.verify import verify
from zosnode.flist.view import FlistView
from zosnode.flist.writer import encode

TOP = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "v1.0-zlib"
OLD_ID = "8b64fd0939dae00863347cb4d659542bea715b2844980168ded50a85374496cc"


def _old_tree(root: Path) -> Path:
    """The tree the fixture was built from (contents, kinds and modes)."""
    r = random.Random(13)
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_bytes(b"old-format\n")
    (root / "etc" / "motd").write_bytes(
        b"an flist written by the 1.0 builder (zlib, fixed 1 MiB chunks)\n" * 20)
    (root / "lib").mkdir()
    big = bytes(r.getrandbits(8) for _ in range(16 * 1024)) * 160
    (root / "lib" / "big.bin").write_bytes(big + b"tail")
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_bytes(b"#!/bin/sh\necho old\n")
    os.chmod(root / "bin" / "tool", 0o755)
    (root / "link").symlink_to("etc/hostname")
    with open(root / "sparse", "wb") as f:
        f.seek(2 * 1024 * 1024)
        f.write(b"x")
        f.truncate(3 * 1024 * 1024)
    for p in [root, *root.rglob("*")]:
        os.utime(p, ns=(1, 1_700_000_000_000_000_000), follow_symlinks=False)
    return root


def _contents(root: Path) -> dict[str, object]:
    """Path -> kind and bytes (or link target) and mode: what must survive any layout."""
    out: dict[str, object] = {}
    for rel, st in snapshot(root).items():
        mode, content = st[0], st[-1]
        out[rel] = (mode, content)
    return out


def _mixed_store(tmp_path: Path) -> tuple[LocalStore, str, str, Path]:
    """One store holding the 1.0 fixture and a 1.1 build of a changed tree."""
    store = LocalStore(tmp_path / "data")
    shutil.copytree(FIXTURE, store.path)
    new_src = _old_tree(tmp_path / "new-src")
    (new_src / "etc" / "hostname").write_bytes(b"new-format\n")
    flist, _ = build_from(str(new_src), store)
    new_id = store.put_flist(encode(flist))
    return store, OLD_ID, new_id, new_src


def test_old_flist_decodes_and_reencodes_to_its_bytes() -> None:
    data = (FIXTURE / "flists" / OLD_ID).read_bytes()
    assert flist_id(data) == OLD_ID
    flist = decode(data)
    assert flist.minor == 0
    assert encode(flist) == data  # read at 1.0, written back at 1.0
    codes = {r.compression for r in flist.blocks().values()}
    assert Compression.ZLIB in codes and Compression.ZSTD not in codes
    # Fixed 1 MiB chunks: big.bin's first extents are whole aligned blocks.
    view = FlistView(flist)
    big = next(e for e in view.entries if e.name == b"big.bin")
    assert [x.length for x in big.extents][:2] == [1 << 20, 1 << 20]


def test_old_store_extracts_and_verifies(tmp_path: Path) -> None:
    store = LocalStore(FIXTURE)
    flist = decode(store.resolve("old"))
    assert not verify(flist, store).problems
    out = tmp_path / "out"
    extract(FlistView(flist), store, out)
    assert _contents(out) == _contents(_old_tree(tmp_path / "src"))


def test_mixed_store_serves_both_formats(tmp_path: Path) -> None:
    store, old_id, new_id, new_src = _mixed_store(tmp_path)
    new = decode(store.get_flist(new_id))
    assert new.minor == 1
    assert {r.compression for r in new.blocks().values()} <= {Compression.ZSTD,
                                                               Compression.NONE}
    assert Compression.ZSTD in {r.compression for r in new.blocks().values()}
    for fid, src in ((old_id, _old_tree(tmp_path / "old-src")), (new_id, new_src)):
        flist = decode(store.get_flist(fid))
        assert not verify(flist, store).problems
        out = tmp_path / f"out-{fid[:8]}"
        extract(FlistView(flist), store, out)
        assert _contents(out) == _contents(src)


@contextmanager
def _mount(fid: str, mnt: Path, server: Nginx, cache: Path) -> Iterator[Path]:
    mnt.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "zosnode", "flist", "mount", fid, str(mnt),
         "--hub", server.url, "--cache", str(cache)],
        cwd=TOP, text=True, stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith("mounted "), line + proc.stderr.read()
        yield mnt
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if str(mnt) in Path("/proc/mounts").read_text():
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_node_mounts_old_and_new_flists_from_one_mixed_store(tmp_path: Path) -> None:
    """A hub whose store holds zlib blocks from before and zstd blocks after
    serves a node that mounts both at once (one block cache for the two)."""
    require_fuse()
    store, old_id, new_id, new_src = _mixed_store(tmp_path)
    old_src = _old_tree(tmp_path / "old-src")
    cache = tmp_path / "cache"
    with nginx(store.path, tmp_path / "nginx") as server, \
            _mount(old_id, tmp_path / "mnt-old", server, cache) as old_mnt, \
            _mount(new_id, tmp_path / "mnt-new", server, cache) as new_mnt:
        assert (old_mnt / "etc" / "hostname").read_bytes() == b"old-format\n"
        assert (new_mnt / "etc" / "hostname").read_bytes() == b"new-format\n"
        assert _contents(old_mnt) == _contents(old_src)
        assert _contents(new_mnt) == _contents(new_src)
