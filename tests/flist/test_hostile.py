"""Attacks and faults on the store, the target directory, input archives and flist bytes."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Any

import cbor2
import pytest

from zosnode.flist.builder import build_from
from zosnode.flist.errors import (
    FlistDataError,
    FormatError,
    IntegrityError,
    UnsafeTargetError,
)
from zosnode.flist.extract import extract
from zosnode.flist.format import decode
from zosnode.flist.store import LocalStore, MissingBlockError
from zosnode.flist.verify import verify
from zosnode.flist.view import FlistView


def _small_tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "passwd").write_bytes(b"root:x:0:0\n" * 100)
    (src / "big").write_bytes(os.urandom(2 * 1024 * 1024 + 5))
    return src


def _block_files(store: LocalStore) -> list[Path]:
    return sorted(p for p in (store.path / "blocks").rglob("*") if p.is_file())


def test_missing_block(tmp_path: Path, store: LocalStore) -> None:
    flist, _ = build_from(str(_small_tree(tmp_path)), store)
    victim = _block_files(store)[0]
    victim.unlink()
    report = verify(flist, store)
    assert [p for p in report.problems if p[0] == victim.name]
    with pytest.raises(MissingBlockError):
        extract(FlistView(flist), store, tmp_path / "out")


def test_block_not_matching_its_hash(tmp_path: Path, store: LocalStore) -> None:
    flist, _ = build_from(str(_small_tree(tmp_path)), store)
    for victim in _block_files(store):
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0x55
        victim.write_bytes(bytes(data))
    report = verify(flist, store)
    assert len(report.problems) == report.checked > 0
    out = tmp_path / "out"
    with pytest.raises(IntegrityError):
        extract(FlistView(flist), store, out)
    # A target that did not exist does not appear half-written.
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src", "store"]
    # Into an existing (empty) directory: nothing from a bad block is written.
    out.mkdir()
    with pytest.raises(IntegrityError):
        extract(FlistView(flist), store, out)
    for p in out.rglob("*"):
        if p.is_file():
            assert p.stat().st_size == 0


def test_block_swapped_for_another_valid_block(tmp_path: Path, store: LocalStore) -> None:
    # A lying mirror serves a real block under another block's name.
    flist, _ = build_from(str(_small_tree(tmp_path)), store)
    files = _block_files(store)
    assert len(files) >= 2
    files[0].write_bytes(files[1].read_bytes())
    with pytest.raises(IntegrityError):
        extract(FlistView(flist), store, tmp_path / "out")


def test_target_must_be_empty(tmp_path: Path, store: LocalStore) -> None:
    flist, _ = build_from(str(_small_tree(tmp_path)), store)
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    # A symlink planted where the image has a directory would redirect writes.
    (out / "etc").symlink_to(outside)
    with pytest.raises(UnsafeTargetError):
        extract(FlistView(flist), store, out)
    assert list(outside.iterdir()) == []


def test_target_that_is_a_symlink_refused(tmp_path: Path, store: LocalStore) -> None:
    flist, _ = build_from(str(_small_tree(tmp_path)), store)
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(UnsafeTargetError):
        extract(FlistView(flist), store, tmp_path / "link")


def test_symlinks_in_image_are_never_followed(tmp_path: Path, store: LocalStore) -> None:
    # An image whose symlink points outside, then a tar member "through" it.
    outside = tmp_path / "outside"
    outside.mkdir()
    tarball = tmp_path / "evil.tar"
    with tarfile.open(tarball, "w") as tar:
        link = tarfile.TarInfo("escape")
        link.type = tarfile.SYMTYPE
        link.linkname = str(outside)
        tar.addfile(link)
        data = b"pwned"
        f = tarfile.TarInfo("escape/file")
        f.size = len(data)
        tar.addfile(f, io.BytesIO(data))
    flist, _ = build_from(str(tarball), store)
    view = FlistView(flist)
    # The member landed inside the image as a directory replacing the symlink,
    # as tar does; nothing is written through the host's symlink.
    out = tmp_path / "out"
    extract(view, store, out)
    assert list(outside.iterdir()) == []
    assert (out / "escape" / "file").read_bytes() == b"pwned"
    assert not (out / "escape").is_symlink()


@pytest.mark.parametrize("name", ["../etc/passwd", "a/../../x", "./../x"])
def test_tar_traversal_names_refused(tmp_path: Path, store: LocalStore, name: str) -> None:
    tarball = tmp_path / "evil.tar"
    with tarfile.open(tarball, "w") as tar:
        info = tarfile.TarInfo(name)
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(FlistDataError, match="not allowed"):
        build_from(str(tarball), store)


def test_tar_hardlink_to_nothing_refused(tmp_path: Path, store: LocalStore) -> None:
    tarball = tmp_path / "evil.tar"
    with tarfile.open(tarball, "w") as tar:
        info = tarfile.TarInfo("h")
        info.type = tarfile.LNKTYPE
        info.linkname = "does/not/exist"
        tar.addfile(info)
    with pytest.raises(FlistDataError, match="hardlink"):
        build_from(str(tarball), store)


def test_truncated_tarball_refused(tmp_path: Path, store: LocalStore) -> None:
    src = _small_tree(tmp_path)
    tarball = tmp_path / "t.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(src, arcname=".")
    data = tarball.read_bytes()
    tarball.write_bytes(data[: len(data) // 2])
    with pytest.raises(FlistDataError):
        build_from(str(tarball), store)


def test_unreadable_source_file_is_a_user_error(tmp_path: Path, store: LocalStore) -> None:
    from zosnode.flist.errors import FlistInputError
    from zosnode.flist.pack import build
    from zosnode.flist.source_dir import tree_from_dir

    src = _small_tree(tmp_path)
    tree = tree_from_dir(src)
    (src / "etc" / "passwd").unlink()  # vanishes between the walk and the read
    with pytest.raises(FlistInputError, match="cannot read /etc/passwd"):
        build(tree, lambda b: store.put_block(b.stored)[1])


# --- hostile flist bytes: only FormatError, one encoding per tree ----------


def _sample_doc() -> dict[str, Any]:
    from zosnode.flist.blocks import Compression
    from zosnode.flist.format import Entry, Flist, Hole, Kind
    from zosnode.flist.writer import encode, encode_block

    blk = encode_block(b"0123456789" * 10, Compression.NONE, False)
    flist = Flist((
        Entry(0, None, b"", Kind.DIR, 0o755),
        Entry(1, 0, b"f", Kind.REG, 0o644, extents=(blk.ref(0, 10), Hole(5))),
    ))
    return cbor2.loads(encode(flist))  # type: ignore[no-any-return]


def _encode_doc(doc: dict[Any, Any]) -> bytes:
    return bytes(cbor2.dumps(doc, canonical=True))


def test_integer_key_in_the_top_map_is_a_format_error() -> None:
    # Sorting the keys for the message raised TypeError (str < int).
    doc: dict[Any, Any] = _sample_doc()
    doc[1] = 0
    with pytest.raises(FormatError, match="unexpected or missing fields: 1"):
        decode(_encode_doc(doc))


@pytest.mark.parametrize(
    "where, value",
    [
        (("entries", 1, 8, 1), [None, False, 5]),  # re-encoded as [null, 0, 5]
        (("entries", 1, 8, 1), [None, 0, True]),
        (("entries", 1, 8, 0), [0, False, 10]),
        (("entries", 1, 8, 0), [0, 0, True]),
        (("blocks", 0, 1), True),
        (("blocks", 0, 2), True),
    ],
)
def test_a_boolean_is_not_a_number(where: tuple[Any, ...], value: Any) -> None:
    doc = _sample_doc()
    node: Any = doc
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    with pytest.raises(FormatError, match="not an integer|hole has offset 0"):
        decode(_encode_doc(doc))


def test_every_accepted_version_re_encodes_to_its_bytes() -> None:
    from zosnode.flist.writer import encode

    doc = _sample_doc()
    doc["version"] = [1, 7]  # a later minor: read, and written back as read
    data = _encode_doc(doc)
    flist = decode(data)
    assert flist.minor == 7
    assert encode(flist) == data


def test_free_form_meta_over_its_cap_is_refused_on_decode() -> None:
    from zosnode.flist.format import MAX_META

    doc = _sample_doc()
    doc["meta"] = {"x": b"\0" * MAX_META}  # encode() refuses this, so decode must
    with pytest.raises(FormatError, match="free-form metadata"):
        decode(_encode_doc(doc))


@pytest.mark.parametrize(
    "argv",
    [
        ["inspect", "{f}"],
        ["ls", "{f}", "/"],
        ["cat", "{f}", "/f", "--store", "{store}"],
        ["verify", "{f}", "--store", "{store}"],
        ["diff", "{f}", "{f}"],
        ["extract", "{f}", "{tmp}/out", "--store", "{store}"],
        # The mount refuses before it contacts any hub or touches FUSE.
        ["mount", "{f}", "{tmp}/mnt", "--hub", "http://127.0.0.1:9", "--cache", "{tmp}/c"],
    ],
)
def test_hostile_flist_file_is_a_one_line_user_error(
    tmp_path: Path, store: LocalStore, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    from zosnode.cli import main

    doc: dict[Any, Any] = _sample_doc()
    doc[1] = 0
    hostile = tmp_path / "hostile.flist"
    hostile.write_bytes(_encode_doc(doc))
    subs = {"{f}": str(hostile), "{store}": str(store.path), "{tmp}": str(tmp_path)}
    args = ["flist"]
    for a in argv:
        for k, v in subs.items():
            a = a.replace(k, v)
        args.append(a)
    rc = main(args)
    _, err = capsys.readouterr()
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "unexpected or missing fields" in err, err
    assert "Traceback" not in err and "internal error" not in err
