"""What an flist holds, in numbers (for `inspect` and the benchmarks)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from zosnode.flist.blocks import BlockRef
from zosnode.flist.format import Flist, Hole, Kind


@dataclass(frozen=True)
class FlistStats:
    entries: int
    by_kind: dict[str, int]
    file_bytes: int      # sum of regular file sizes (hardlinks counted once)
    hole_bytes: int      # of which are holes, never stored
    blocks: int          # distinct blocks
    stored_bytes: int    # their stored size: what a node downloads to read everything
    decoded_bytes: int   # their decoded size
    packed_blocks: int   # blocks shared by more than one file


def flist_stats(flist: Flist) -> FlistStats:
    kinds: Counter[str] = Counter()
    file_bytes = hole_bytes = 0
    users: Counter[str] = Counter()
    for e in flist.entries:
        kinds[e.kind.name.lower()] += 1
        if e.kind is Kind.REG:
            file_bytes += e.size
            seen = set()
            for x in e.extents:
                if isinstance(x, Hole):
                    hole_bytes += x.length
                elif x.id not in seen:
                    seen.add(x.id)
                    users[x.id] += 1
    blocks = flist.blocks()
    return FlistStats(
        entries=len(flist.entries),
        by_kind=dict(sorted(kinds.items())),
        file_bytes=file_bytes,
        hole_bytes=hole_bytes,
        blocks=len(blocks),
        stored_bytes=sum(r.stored_size for r in blocks.values()),
        decoded_bytes=sum(r.size for r in blocks.values()),
        packed_blocks=sum(1 for n in users.values() if n > 1),
    )


def fetch_bytes(have: Flist, want: Flist) -> tuple[int, int]:
    """Blocks and stored bytes a node holding `have` must fetch to read all of `want`."""
    held = set(have.blocks())
    missing: list[BlockRef] = [r for b, r in want.blocks().items() if b not in held]
    return len(missing), sum(r.stored_size for r in missing)
