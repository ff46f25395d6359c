"""The cpio newc writer and reader, checked against GNU cpio as the peer."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zosnode.bootmedia import cpio
from zosnode.bootmedia.cpio import Entry, Kind
from zosnode.bootmedia.errors import BuildError, FormatError

SAMPLE = (
    Entry("dev", Kind.DIR, 0o755),
    Entry("dev/console", Kind.CHAR, 0o600, rdev=(5, 1)),
    Entry("init", Kind.FILE, 0o755, data=b"#!/usr/bin/python3.11\nprint()\n"),
    Entry("lib64", Kind.SYMLINK, 0o777, target="lib"),
    Entry("tmp", Kind.DIR, 0o1777),
    Entry("z", Kind.FILE, 0o644, data=b"x" * 5),
)


def test_round_trip_and_sorted() -> None:
    data = cpio.encode(reversed(SAMPLE), mtime=1234)
    assert cpio.decode(data) == SAMPLE
    assert data == cpio.encode(SAMPLE, mtime=1234)  # input order does not matter


def test_a_key_orders_the_members() -> None:
    def files_first(e: Entry) -> tuple[int, str]:
        return (0 if e.kind is Kind.FILE else 1, e.path)

    data = cpio.encode(reversed(SAMPLE), mtime=1234, key=files_first)
    assert cpio.decode(data) == tuple(sorted(SAMPLE, key=files_first)) != SAMPLE
    assert data == cpio.encode(SAMPLE, mtime=1234, key=files_first)


def test_the_image_order_puts_directories_first_and_like_beside_like() -> None:
    from zosnode.bootmedia.initramfs import stream_order

    entries = [Entry("usr/lib/python3.11/os.pyc", Kind.FILE, 0o644, data=b"\xa7\r\r\n"),
               Entry("usr", Kind.DIR, 0o755), Entry("init", Kind.FILE, 0o755, data=b"#!"),
               Entry("lib/modules/6.1/fuse.ko", Kind.FILE, 0o644, data=b"\x7fELF"),
               Entry("usr/bin/python3.11", Kind.FILE, 0o755, data=b"\x7fELF"),
               Entry("a", Kind.DIR, 0o755), Entry("dev/null", Kind.CHAR, 0o666, rdev=(1, 3))]
    order = [e.path for e in sorted(entries, key=stream_order)]
    assert order == ["a", "usr", "usr/bin/python3.11", "init", "usr/lib/python3.11/os.pyc",
                     "lib/modules/6.1/fuse.ko", "dev/null"]


def test_every_truncation_is_refused() -> None:
    data = cpio.encode(SAMPLE)
    end = len(data)
    while data[end - 1] == 0:  # trailing NULs after the trailer name are padding
        end -= 1
    for cut in range(end - 1):
        with pytest.raises(FormatError):
            cpio.decode(data[:cut])


def test_trailing_data() -> None:
    data = cpio.encode(SAMPLE)
    assert cpio.decode(data + b"\0" * 512) == SAMPLE  # block padding is fine
    for junk in (b"x", b"\0\0\0x", cpio.encode(SAMPLE)):
        with pytest.raises(FormatError, match="after the trailer"):
            cpio.decode(data + junk)


def test_corrupted_headers_are_refused() -> None:
    data = bytearray(cpio.encode(SAMPLE))
    for pos, value in ((0, ord("1")), (20, ord("g")), (20, ord("_"))):
        bad = bytearray(data)
        bad[pos] = value
        with pytest.raises(FormatError):
            cpio.decode(bytes(bad))


@pytest.mark.parametrize("entry", [
    dict(path="/abs", kind=Kind.DIR),
    dict(path="a/../b", kind=Kind.DIR),
    dict(path="a//b", kind=Kind.DIR),
    dict(path="", kind=Kind.DIR),
    dict(path="d", kind=Kind.DIR, data=b"x"),
    dict(path="l", kind=Kind.SYMLINK),
    dict(path="f", kind=Kind.FILE, rdev=(1, 3)),
    dict(path="f", kind=Kind.FILE, perm=0o17777),
])
def test_invalid_entries_are_our_error(entry: dict[str, object]) -> None:
    with pytest.raises(BuildError):
        Entry(**entry)  # type: ignore[arg-type]


def test_duplicates_and_conflicts() -> None:
    with pytest.raises(BuildError):
        cpio.encode([SAMPLE[0], SAMPLE[0]])
    tree = cpio.Tree()
    tree.add(Entry("a/b", Kind.FILE, data=b"1"))
    assert [e.path for e in tree.entries()] == ["a", "a/b"]
    with pytest.raises(BuildError):
        tree.add(Entry("a/b", Kind.FILE, data=b"2"))
    with pytest.raises(BuildError):
        tree.add(Entry("a/b/c", Kind.FILE))


_names = st.text(alphabet="abcXYZ019._-", min_size=1, max_size=12).filter(
    lambda s: s not in (".", ".."))


@given(st.dictionaries(_names, st.binary(max_size=64), max_size=8))
def test_round_trip_property(files: dict[str, bytes]) -> None:
    entries = tuple(Entry(n, Kind.FILE, 0o644, data=d) for n, d in sorted(files.items()))
    assert cpio.decode(cpio.encode(entries)) == entries


needs_cpio = pytest.mark.skipif(shutil.which("cpio") is None, reason="needs GNU cpio")


@needs_cpio
def test_gnu_cpio_reads_ours(tmp_path: Path) -> None:
    archive = cpio.encode(SAMPLE)
    listing = subprocess.run(["cpio", "-it", "--quiet"], input=archive, capture_output=True,
                             check=True).stdout.decode().split()
    assert listing == [e.path for e in SAMPLE]
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["cpio", "-id", "--quiet", "--no-absolute-filenames"], input=archive,
                   cwd=out, check=True, capture_output=True)
    assert (out / "init").read_bytes() == SAMPLE[2].data
    assert (out / "lib64").readlink() == Path("lib")


@needs_cpio
def test_we_read_gnu_cpio(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"hello")
    (tmp_path / "d" / "l").symlink_to("f")
    archive = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], input=b"d\nd/f\nd/l\n",
                             cwd=tmp_path, capture_output=True, check=True).stdout
    got = {e.path: e for e in cpio.decode(archive)}
    assert got["d/f"].data == b"hello" and got["d/l"].target == "f"
    assert got["d"].kind is Kind.DIR
