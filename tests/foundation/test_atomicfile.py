"""`zosnode.atomicfile`: what a reader and a crash can see of a write."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from zosnode import atomicfile


class Boom(Exception):
    pass


def names(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


@pytest.mark.parametrize("durable", [True, False])
def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temp(
    tmp_path: Path, durable: bool
) -> None:
    target = tmp_path / "f"
    atomicfile.write_atomic(target, b"old", durable=durable)
    with pytest.raises(Boom), atomicfile.open_atomic(target, durable=durable) as f:
        f.write(b"half of the new")
        raise Boom
    assert target.read_bytes() == b"old" and names(tmp_path) == ["f"]
    with atomicfile.open_atomic(target, mode=0o600, durable=durable) as f:
        f.write(b"new, ")
        f.write(b"in pieces")
    assert target.read_bytes() == b"new, in pieces" and names(tmp_path) == ["f"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_no_overwrite_refuses_an_existing_name(tmp_path: Path) -> None:
    target = tmp_path / "key"
    atomicfile.write_atomic(target, b"first", mode=0o600, overwrite=False)
    with pytest.raises(FileExistsError):
        atomicfile.write_atomic(target, b"second", overwrite=False)
    assert target.read_bytes() == b"first" and names(tmp_path) == ["key"]


def test_a_planted_symlink_is_replaced_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"precious")
    (tmp_path / "d").mkdir()
    target = tmp_path / "d" / "f"
    target.symlink_to(outside)
    atomicfile.write_atomic(target, b"mine")
    assert outside.read_bytes() == b"precious"
    assert not target.is_symlink() and target.read_bytes() == b"mine"


def test_a_tree_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "tree"
    with pytest.raises(Boom), atomicfile.new_tree(target) as tmp:
        Path(tmp, "a").write_bytes(b"1")
        assert not target.exists()
        raise Boom
    assert names(tmp_path) == []
    with atomicfile.new_tree(target) as tmp:
        assert stat.S_IMODE(os.stat(tmp).st_mode) == 0o700
        Path(tmp, "a").write_bytes(b"1")
    assert names(target) == ["a"] and names(tmp_path) == ["tree"]


def test_a_tree_never_replaces_a_full_directory(tmp_path: Path) -> None:
    target = tmp_path / "tree"
    target.mkdir()
    (target / "theirs").write_bytes(b"")
    with pytest.raises(OSError), atomicfile.new_tree(target) as tmp:
        Path(tmp, "mine").write_bytes(b"")
    assert names(target) == ["theirs"] and names(tmp_path) == ["tree"]


def test_remove_tree(tmp_path: Path) -> None:
    target = tmp_path / "tree"
    (target / "sub").mkdir(parents=True)
    (target / "sub" / "f").write_bytes(b"x")
    atomicfile.remove_tree(target)
    assert names(tmp_path) == []
    atomicfile.remove_tree(target)  # already gone: not an error
    assert names(tmp_path) == []
