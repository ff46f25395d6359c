"""Serve one flist over FUSE until SIGTERM: the child `FuseChildMounter` runs.

    python3 examples/fuse_mount_child.py --flist-file F --cache DIR --mirror URL... MOUNTPOINT

A stand-in for a `zosnode flist mount` command (the contract is the same):
it prints `mounted` once the mount is live and unmounts on SIGTERM/SIGINT.
Blocks come through the shared cache directory, else the mirrors.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import trio

from zosnode.cache.store import BlockCache
from zosnode.fetch.fetcher import Fetcher
from zosnode.mount.service import serve_flist


async def main(args: argparse.Namespace) -> None:
    flist = args.flist_file.read_bytes()
    fetcher = Fetcher(args.mirror)
    cache = BlockCache(args.cache, args.cache_bytes)
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_flist, flist, args.mountpoint, fetcher, cache)
        print(f"mounted {args.mountpoint}", flush=True)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                break
        nursery.cancel_scope.cancel()
    await fetcher.aclose()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--flist-file", type=Path, required=True)
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--cache-bytes", type=int, default=512 * 1024 * 1024)
    p.add_argument("--mirror", action="append", required=True)
    p.add_argument("mountpoint", type=Path)
    trio.run(main, p.parse_args())
    sys.exit(0)
