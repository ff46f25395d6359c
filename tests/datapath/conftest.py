"""Fixtures of the data path tests: a DATA directory of blocks and mirrors on it."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from tests.lab.faulty_mirror import FaultyMirror


def put_block(data_dir: Path, stored: bytes) -> str:
    bid = hashlib.blake2b(stored, digest_size=32).hexdigest()
    path = data_dir / "blocks" / bid[:2] / bid
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(stored)
    return bid


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    (d / "blocks").mkdir(parents=True)
    (d / "flists").mkdir()
    return d


@pytest.fixture
def blobs(data_dir: Path) -> dict[str, bytes]:
    """A few blocks of assorted sizes in `data_dir`, by id."""
    out = {}
    for size in (1, 1000, 65536, 300_000, 1 << 20):
        stored = os.urandom(size)
        out[put_block(data_dir, stored)] = stored
    return out


@pytest.fixture
async def mirror(data_dir: Path) -> AsyncIterator[FaultyMirror]:
    async with trio.open_nursery() as nursery:
        m = FaultyMirror(data_dir)
        await m.start(nursery)
        yield m
        nursery.cancel_scope.cancel()


@pytest.fixture
async def mirror2(data_dir: Path) -> AsyncIterator[FaultyMirror]:
    async with trio.open_nursery() as nursery:
        m = FaultyMirror(data_dir)
        await m.start(nursery)
        yield m
        nursery.cancel_scope.cancel()
