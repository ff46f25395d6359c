"""Check that every block an flist references is in a store and correct."""

from __future__ import annotations

from dataclasses import dataclass

from zosnode.flist.blocks import decode_block
from zosnode.flist.errors import FlistDataError
from zosnode.flist.extract import StoredBlocks
from zosnode.flist.format import Flist


@dataclass(frozen=True)
class VerifyReport:
    checked: int
    problems: tuple[tuple[str, str], ...]  # block id, what is wrong


def verify(flist: Flist, source: StoredBlocks) -> VerifyReport:
    problems = []
    blocks = flist.blocks()
    for bid, ref in blocks.items():
        try:
            decode_block(ref, source.get(ref))
        except FlistDataError as exc:
            problems.append((bid, str(exc)))
    return VerifyReport(len(blocks), tuple(problems))
