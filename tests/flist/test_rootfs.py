"""A real Debian root filesystem: build its flist, extract it, compare everything."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.flist.trees import assert_same_tree
from tests.lab.rootfs import rootfs_tarball
from zosnode.flist.builder import build_from
from zosnode.flist.extract import extract
from zosnode.flist.format import decode
from zosnode.flist.stats import flist_stats
from zosnode.flist.store import LocalStore
from zosnode.flist.verify import verify
from zosnode.flist.view import FlistView
from zosnode.flist.writer import encode


def _listing(root: Path) -> list[str]:
    return subprocess.run(
        ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--sort=name",
         "--full-time", "-C", str(root), "-cvvf", "/dev/null", "."],
        check=True, capture_output=True, text=True, errors="surrogateescape",
    ).stdout.splitlines()


@pytest.mark.slow
def test_debian_minbase_round_trip(debian_rootfs: Path, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    flist, stats = build_from(str(debian_rootfs), store)
    data = encode(flist)
    view = FlistView(decode(data))
    s = flist_stats(view.flist)
    assert s.entries > 5000 and s.file_bytes > 100 * 1024 * 1024
    # Packing: reading every file costs far fewer requests than there are files.
    assert s.blocks < s.by_kind["reg"] / 5
    assert verify(view.flist, store).problems == ()
    out = tmp_path / "out"
    extract(view, store, out)
    assert_same_tree(debian_rootfs, out)
    assert _listing(debian_rootfs) == _listing(out)
    res = subprocess.run(["diff", "-r", "--no-dereference", "-x", "dev",
                          str(debian_rootfs), str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-2000:]
    # Rebuilding the extracted tree gives the same flist id: nothing was lost.
    again, again_stats = build_from(str(out), store)
    assert encode(again) == data
    assert again_stats.new_blocks == 0
    # The tarball the tree came from gives the very same flist too.
    from_tar, _ = build_from(str(rootfs_tarball()), store)
    assert encode(from_tar) == data
