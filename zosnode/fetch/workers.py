"""Threads that hash, decrypt and decompress blocks, one per core: hashlib (over 2 KiB),
zlib, lzma, bz2, zstd and PyNaCl let go of the GIL; more would only queue and hold blocks."""

import os
from collections.abc import Callable
from typing import TypeVar

import trio

T = TypeVar("T")

INLINE_UP_TO = 64 * 1024  # up to this, a thread hop (about 50 µs) costs more than the work

_LIMITER: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("zosnode_cpu")


def cpu_limiter() -> trio.CapacityLimiter:
    try:
        return _LIMITER.get()
    except LookupError:
        limiter = trio.CapacityLimiter(max(1, len(os.sched_getaffinity(0))))
        _LIMITER.set(limiter)
        return limiter


async def on_cpu(fn: Callable[..., T], *args: object, size: int) -> T:
    """`fn(*args)` in a CPU worker thread, or inline when `size` bytes is little work."""
    if size <= INLINE_UP_TO:
        return fn(*args)
    return await trio.to_thread.run_sync(fn, *args, limiter=cpu_limiter())
