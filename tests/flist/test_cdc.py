"""Large files cut by content: an insertion changes only the chunks around it.

And the packer's threads change nothing: the same tree gives the same flist
and the same statistics with one worker or four, and equal blocks encoded at
the same time are stored once.
"""

from __future__ import annotations

import io
import random
import threading

import pytest

from zosnode.flist.blocks import BlockRef, Compression
from zosnode.flist.cdc import CdcSizes, cut
from zosnode.flist.errors import FlistInputError
from zosnode.flist.format import Flist, Hole, Kind
from zosnode.flist.pack import BuildOptions, build
from zosnode.flist.stats import fetch_bytes
from zosnode.flist.tree import Content, Node, Tree
from zosnode.flist.writer import EncodedBlock, encode

SIZES = {"cdc_min": 16 * 1024, "cdc_avg": 64 * 1024, "cdc_max": 256 * 1024}
CDC = BuildOptions(compression=Compression.NONE, **SIZES)  # type: ignore[arg-type]
FIXED = BuildOptions(compression=Compression.NONE, chunking="fixed", chunk_size=64 * 1024)


def _tree(files: dict[bytes, bytes]) -> Tree:
    tree = Tree()
    for name, data in files.items():
        tree.put((name,), Node(Kind.REG, mode=0o644, content=Content.of_bytes(data)))
    return tree


class _Sink:
    def __init__(self) -> None:
        self.blocks: dict[str, bytes] = {}
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, b: EncodedBlock) -> bool:
        with self.lock:
            self.calls += 1
            new = b.id not in self.blocks
            self.blocks[b.id] = b.stored
            return new


def _image(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.mark.parametrize("where", [0.5, 0.0, 0.999])
def test_insertion_changes_only_the_chunks_around_it(where: float) -> None:
    v1 = _image(8 << 20)
    at = int(len(v1) * where)
    v2 = v1[:at] + _image(4096, seed=99) + v1[at:]
    a, _ = build(_tree({b"disk.img": v1}), _Sink(), CDC)
    b, _ = build(_tree({b"disk.img": v2}), _Sink(), CDC)
    blocks, nbytes = fetch_bytes(a, b)
    # One or two chunks around the insertion (each at most cdc_max), never the tail.
    assert 1 <= blocks <= 3, blocks
    assert nbytes <= 3 * SIZES["cdc_max"], nbytes
    # Fixed offsets (format 1.0's layout) refetch everything after the insertion.
    fa, _ = build(_tree({b"disk.img": v1}), _Sink(), FIXED)
    fb, _ = build(_tree({b"disk.img": v2}), _Sink(), FIXED)
    fixed_bytes = fetch_bytes(fa, fb)[1]
    assert fixed_bytes >= (len(v1) - at) * 0.9
    print(f"insert at {where:.0%}: CDC fetches {blocks} blocks, {nbytes} bytes; "
          f"fixed chunks {fixed_bytes} bytes")


def test_chunks_respect_bounds_and_cover_the_file() -> None:
    data = _image(3 << 20)
    sizes = CdcSizes(16 * 1024, 64 * 1024, 256 * 1024)
    chunks = list(cut(io.BytesIO(data), len(data), sizes))
    assert b"".join(chunks) == data
    assert all(len(c) <= sizes.max for c in chunks)
    assert all(len(c) >= sizes.min for c in chunks[:-1])
    # The cuts do not depend on how the source hands out its bytes.
    again = list(cut(io.BufferedReader(io.BytesIO(data), 5000), len(data), sizes))
    assert [len(c) for c in again] == [len(c) for c in chunks]


def _chunk_lengths(flist_: Flist, name: bytes) -> list[int]:
    entry = next(e for e in flist_.entries if e.name == name)
    return [x.length for x in entry.extents if isinstance(x, BlockRef)]


def test_files_past_the_threshold_are_cut_finer() -> None:
    # The threshold lowered to 1 MiB so the test stays small; the sizes are the defaults.
    opts = BuildOptions(compression=Compression.NONE, cdc_fine_from=1 << 20)
    big, mid = _image(4 << 20, seed=1), _image(900 * 1024, seed=2)
    flist, _ = build(_tree({b"big": big, b"mid": mid}), _Sink(), opts)
    fine = _chunk_lengths(flist, b"big")
    assert sum(fine) == len(big)
    assert all(len_ <= opts.cdc_fine_max for len_ in fine)
    assert all(len_ >= opts.cdc_fine_min for len_ in fine[:-1])
    # About 4 MiB / ~60 KiB; the coarse sizes (min 256 KiB) would give at most 16.
    assert len(fine) > 40, len(fine)
    coarse = _chunk_lengths(flist, b"mid")
    assert sum(coarse) == len(mid) and len(coarse) <= 3, coarse
    # From cdc_fine_below on, coarse again (the flist's size and block cap).
    assert opts.cdc_sizes(opts.cdc_fine_below - 1).avg == opts.cdc_fine_avg
    assert opts.cdc_sizes(opts.cdc_fine_below).avg == opts.cdc_avg
    capped = BuildOptions(compression=Compression.NONE, cdc_fine_from=1 << 20,
                          cdc_fine_below=2 << 20)
    assert len(_chunk_lengths(build(_tree({b"big": big}), _Sink(), capped)[0], b"big")) <= 16
    # None: every large file gets the coarse sizes.
    off = BuildOptions(compression=Compression.NONE, cdc_fine_from=None)
    assert len(_chunk_lengths(build(_tree({b"big": big}), _Sink(), off)[0], b"big")) <= 16
    print(f"fine: {len(fine)} chunks of a 4 MiB file, mean {len(big) // len(fine)} bytes")


def test_insertion_into_a_finely_cut_file_fetches_little() -> None:
    opts = BuildOptions(compression=Compression.NONE, cdc_fine_from=1 << 20)
    v1 = _image(8 << 20)
    total = 0
    for i, where in enumerate((0.2, 0.4, 0.6, 0.8)):
        at = int(len(v1) * where)
        v2 = v1[:at] + _image(4096, seed=99 + i) + v1[at:]
        a, _ = build(_tree({b"disk.img": v1}), _Sink(), opts)
        b, _ = build(_tree({b"disk.img": v2}), _Sink(), opts)
        blocks, nbytes = fetch_bytes(a, b)
        assert 1 <= blocks <= 8 and nbytes <= 4 * opts.cdc_fine_max, (blocks, nbytes)
        total += nbytes
    # The coarse sizes fetch about 1 MiB per insertion; the fine ones about 0.1 MB.
    assert total / 4 < 400_000, total
    print(f"fine chunks: {total / 4:.0f} bytes fetched per 4 KiB insertion (mean of 4)")


def test_chunk_parameters_are_checked() -> None:
    with pytest.raises(FlistInputError, match="normalization 4"):
        CdcSizes(16 * 1024, 64 * 1024, 256 * 1024, 4)
    with pytest.raises(FlistInputError, match="cdc_fine_from"):
        BuildOptions(cdc_fine_from=64 * 1024)
    with pytest.raises(FlistInputError, match="cdc_fine_below"):
        BuildOptions(cdc_fine_from=1 << 30, cdc_fine_below=1 << 30)
    with pytest.raises(FlistInputError, match="out of range"):
        BuildOptions(cdc_fine_min=64 * 1024, cdc_fine_avg=48 * 1024)


def test_file_shorter_than_stated_is_refused() -> None:
    with pytest.raises(FlistInputError, match="shorter"):
        list(cut(io.BytesIO(b"x" * 1000), 2000, CdcSizes(64, 256, 1024)))
    tree = Tree()
    tree.put((b"f",), Node(Kind.REG, content=Content(1 << 20, lambda: io.BytesIO(b"x" * 5))))
    with pytest.raises(FlistInputError, match="shorter"):
        build(tree, _Sink(), CDC)


def test_zero_runs_become_holes_inside_content_defined_chunks() -> None:
    data = bytes(3 << 20) + b"middle" + bytes(3 << 20) + _image(100_000) + bytes(200_000)
    flist, _ = build(_tree({b"sparse": data}), _Sink(), BuildOptions())
    entry = next(e for e in flist.entries if e.name == b"sparse")
    stored = sum(x.length for x in entry.extents if isinstance(x, BlockRef))
    assert stored <= 100_006 + 2 * 64 * 1024
    assert isinstance(entry.extents[0], Hole) and isinstance(entry.extents[-1], Hole)


def test_threads_change_nothing_and_equal_blocks_are_stored_once() -> None:
    big = _image(2 << 20)
    files = {f"copy{i}".encode(): big for i in range(8)}
    files.update({f"other{i}".encode(): _image(300_000, seed=i) for i in range(8)})
    results = []
    for workers in (1, 4):
        sink = _Sink()
        options = BuildOptions(**SIZES)  # type: ignore[arg-type]
        flist, stats = build(_tree(files), sink, options, workers=workers)
        # Every distinct block reached the sink exactly once.
        assert sink.calls == len(sink.blocks) == stats.blocks == stats.new_blocks
        results.append((encode(flist), stats.blocks, stats.new_bytes))
    assert results[0] == results[1]


def test_the_chunker_is_never_loaded_by_a_node() -> None:
    # pyfastcdc is imported by cdc.cut alone, which only the builder calls: the
    # node's entry points (node run, the mount child) never load it.
    import subprocess
    import sys

    code = ("import sys, zosnode.cli, zosnode.cli.node_cmd, zosnode.agent.boot, "
            "zosnode.mount.child, zosnode.flist.blocks; "
            "print(sorted(m for m in sys.modules if m.startswith(('pyfastcdc', "
            "'zosnode.flist.cdc', 'zosnode.flist.pack'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout
