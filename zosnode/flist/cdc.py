"""Content-defined cut points for large files: FastCDC 2020 (pyfastcdc, Cython).

A cut falls where a rolling gear hash of the last bytes matches a mask, so
bytes inserted into or removed from a file move only the cuts near them: the
chunks before are unchanged and the ones after line up again at the next cut.
The chunker is the pinned pyfastcdc (a port of fastcdc-rs's v2020 module, so
its cuts are a published algorithm's, and fixed for a pinned version), which
only the builder imports: a node never cuts anything (tests/foundation/
test_boundaries.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from zosnode.flist.errors import FlistInputError


@dataclass(frozen=True)
class CdcSizes:
    """FastCDC's bounds; the mean chunk is about `avg` (cuts are never closer than `min`).

    `normalization` is FastCDC's NC: a harder mask before `avg` bytes and an easier
    one after, NC bits either side. It narrows the spread of chunk sizes, so the
    chunk an insertion lands in (a size-biased pick: big chunks are hit more often)
    is smaller for the same number of chunks; but the two masks are not nested, so
    a cut pushed across `avg` by an insertion can vanish and the chunks after it
    differ until the cuts meet again, which NC 3 makes common (bench/flist.md)."""

    min: int
    avg: int
    max: int
    normalization: int = 1

    def __post_init__(self) -> None:
        # pyfastcdc's own ranges; min < avg < max keeps the normalisation meaningful.
        if not (64 <= self.min < self.avg < self.max and self.avg <= 4 << 20
                and self.min <= 1 << 20 and 1024 <= self.max <= 16 << 20
                and 0 <= self.normalization <= 3):
            raise FlistInputError(
                f"content-defined chunk sizes {self.min}/{self.avg}/{self.max} "
                f"(normalization {self.normalization}) are out of range"
            )


class _Exact:
    """Exactly `size` bytes of `f`, then end of file; a file that ends early is an error
    (one that goes on is the caller's to notice)."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f, self.left = f, size

    def read(self, n: int) -> bytes:
        n = min(n, self.left)
        if n <= 0:
            return b""
        data = self._f.read(n)
        if not data:
            raise FlistInputError("a file got shorter while it was being read")
        self.left -= len(data)
        return data


def cut(f: BinaryIO, size: int, sizes: CdcSizes) -> Iterator[bytes]:
    """The next `size` bytes of `f` as content-defined chunks (copies, safe to keep)."""
    from pyfastcdc import FastCDC  # the builder's alone: never imported on a node

    chunker = FastCDC(sizes.avg, min_size=sizes.min, max_size=sizes.max,
                      normalized_chunking=sizes.normalization)  # type: ignore[arg-type]
    src = _Exact(f, size)
    total = 0
    for chunk in chunker.cut_stream(src):
        total += chunk.length
        yield bytes(chunk.data)
    if total != size:  # pragma: no cover - _Exact raises first
        raise FlistInputError("a file got shorter while it was being read")
