"""Extracted flists are sealed read-only, so no process (root included) rewrites them."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tests.lab.netns import require_root
from zosnode.agent.boot.mounters import seal_readonly
from zosnode.mount.mountpoint import detach


def test_sealed_tree_refuses_writes_even_from_root(tmp_path: Path) -> None:
    require_root("a read-only bind mount")
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "svc.py").write_text("print('verified')\n")
    assert seal_readonly(tree)
    try:
        for attempt in (
            lambda: (tree / "bin" / "svc.py").write_text("print('pwned')\n"),
            lambda: (tree / "bin" / "new").write_text(""),
            lambda: os.unlink(tree / "bin" / "svc.py"),
        ):
            with pytest.raises(OSError) as info:
                attempt()
            assert info.value.errno == errno.EROFS
        assert (tree / "bin" / "svc.py").read_text() == "print('verified')\n"
    finally:
        detach(tree)
    assert not os.path.ismount(tree)
    (tree / "bin" / "svc.py").write_text("writable again once unsealed\n")


def test_seal_and_detach_need_no_find_library(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A node's initramfs has no ldconfig, gcc or ld: libc comes from the process itself."""
    require_root("a read-only bind mount")
    import ctypes.util

    def no_tools(name: str) -> str | None:
        raise AssertionError(f"find_library({name!r}) runs ldconfig/gcc/ld, absent on a node")

    monkeypatch.setattr(ctypes.util, "find_library", no_tools)
    tree = tmp_path / "tree"
    tree.mkdir()
    assert seal_readonly(tree)
    try:
        with pytest.raises(OSError) as info:
            (tree / "new").write_text("")
        assert info.value.errno == errno.EROFS
    finally:
        detach(tree)
    (tree / "new").write_text("writable once detached")
