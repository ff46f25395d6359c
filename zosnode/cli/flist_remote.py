"""Commands of `zosnode flist` that fetch from hubs (see flist_cmd).

    flist mount FLIST MOUNTPOINT --hub URL ... [--cache DIR]   (foreground)
    flist extract FLIST DIR --hub URL ...                       (adds --hub to extract)
    flist record-prefetch FLIST --hub URL -o OUT --run ARGV...  (boot-order hint)

FLIST is an flist file or a 64-hex id fetched from the hubs and checked
against that id. Without --cache, blocks are cached in RAM (a tmpfs
directory shared by every mount on this machine).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import os
import re
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from zosnode.atomicfile import write_atomic
from zosnode.cache.store import BlockCache
from zosnode.cli.flist_local import extract_summary
from zosnode.cli.group import add_command
from zosnode.cli.meter import Meter
from zosnode.errors import UsageError, UserError, ZosError
from zosnode.fetch.fetcher import Fetcher
from zosnode.fetch.pipeline import extract_view
from zosnode.fetch.source import BlockSource
from zosnode.flist.errors import FlistDataError
from zosnode.flist.format import MAX_METADATA, Flist, decode, flist_id
from zosnode.flist.view import FlistView
from zosnode.layout import is_hex_id

if TYPE_CHECKING:  # pyfuse3 and the mount service: not for `flist extract --hub`
    from zosnode.mount.service import MountedFlist


@asynccontextmanager
async def mounted(
    flist_bytes: bytes,
    mountpoint: str | os.PathLike[str],
    fetcher: Fetcher,
    cache: BlockCache,
    **kwargs: Any,
) -> AsyncIterator[MountedFlist]:
    """`serve_flist` for the duration of an `async with` block (`flist mount`,
    `record-prefetch`; the node's mount child serves its one mount itself)."""
    from zosnode.mount.service import serve_flist

    async with trio.open_nursery() as nursery:
        handle: MountedFlist = await nursery.start(
            partial(serve_flist, flist_bytes, mountpoint, fetcher, cache, **kwargs)
        )
        try:
            yield handle
        finally:
            nursery.cancel_scope.cancel()


RAM_CACHE = Path("/dev/shm/zosnode-cache")


def _cache(args: argparse.Namespace) -> BlockCache:
    size = args.cache_size * 1024 * 1024
    if size <= 0:
        raise UserError("--cache-size must be positive")
    path = Path(args.cache) if args.cache else RAM_CACHE
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return BlockCache(path, size, durable=bool(args.cache))
    except OSError as exc:
        raise UserError(f"cache directory {path}: {exc.strerror}") from None


def _fetcher(args: argparse.Namespace) -> Fetcher:
    if not args.hub:
        raise UserError("give at least one --hub URL")
    for url in args.hub:
        if not re.match(r"https?://[^/]+", url):
            raise UserError(f"--hub {url!r} is not an http(s) URL")
    if len(set(args.hub)) != len(args.hub):
        raise UserError("the same --hub is given twice")
    return Fetcher(args.hub, deadline_s=args.deadline)


async def _flist_bytes(name: str, fetcher: Fetcher) -> bytes:
    path = Path(name)
    if path.is_file() or not is_hex_id(name):
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_METADATA + 1)
        except OSError as exc:
            raise UserError(
                f"{name}: {exc.strerror} (give an flist file or a 64-hex id)"
            ) from None
        if len(data) > MAX_METADATA:
            raise UserError(f"{name}: larger than an flist may be")
        return data
    try:
        return await fetcher.fetch_flist(name, max_size=MAX_METADATA)
    except ZosError as exc:
        raise UserError(f"flist {name}: {exc}") from None


def _check(data: bytes, name: str) -> Flist:
    try:
        return decode(data)
    except FlistDataError as exc:
        raise UserError(f"{name}: not a valid flist: {exc}") from None


def _run(main: Callable[[], Awaitable[int]]) -> int:
    async def guarded() -> int:
        # SIGTERM is a stop like Ctrl-C: cancel, so the mount is taken down.
        result = 130
        async with trio.open_nursery() as nursery:
            async def watch() -> None:
                with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for _ in signals:
                        nursery.cancel_scope.cancel()
                        return

            async def body() -> None:
                nonlocal result
                result = await main()
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            nursery.start_soon(body)
        return result

    try:
        return trio.run(guarded)
    except BaseExceptionGroup as group:
        # Our nurseries wrap a user mistake in a group; show it as one.
        mistakes = group.subgroup(lambda e: isinstance(e, UsageError))
        while mistakes is not None and isinstance(mistakes, BaseExceptionGroup):
            first = mistakes.exceptions[0]
            if not isinstance(first, BaseExceptionGroup):
                raise first from None
            mistakes = first
        raise


def _mount(args: argparse.Namespace) -> int:
    mountpoint = Path(args.mountpoint)

    async def main() -> int:
        fetcher = _fetcher(args)
        data = await _flist_bytes(args.flist, fetcher)
        _check(data, args.flist)
        cache = _cache(args)
        try:
            async with mounted(data, mountpoint, fetcher, cache,
                               prefetch=not args.no_prefetch) as m:
                print(f"mounted {flist_id(data)} at {mountpoint} (Ctrl-C unmounts)",
                      file=sys.stderr, flush=True)
                await m.prefetch_done.wait()
                if m.prefetch.wanted:
                    print(f"prefetched {m.prefetch.fetched} of {m.prefetch.wanted} hinted"
                          " blocks", file=sys.stderr, flush=True)
                await trio.sleep_forever()
        except ZosError as exc:
            raise UserError(str(exc)) from None
        return 0

    return _run(main)


def _keep_heap() -> None:
    """glibc gives freed heap back and faults it in again for the next block (a 1.6 MB GET:
    5 `brk`, 4-5 ms of CPU against 1.4-2): a one-off extract keeps up to 64 MiB of it, and
    its blocks and bodies (under 32 MiB) on the heap, not each in an mmap of its own."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: left as it is
        mallopt = ctypes.CDLL(None).mallopt
        mallopt(-2, 64 << 20)  # M_TOP_PAD
        mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD, glibc's largest


def _extract_remote(args: argparse.Namespace) -> int:
    # Without --cache, no cache: blocks go from the network to the writer.
    cache = _cache(args) if args.cache else None
    _keep_heap()
    skipped: list[str] = []

    async def main() -> int:
        fetcher = _fetcher(args)
        data = await _flist_bytes(args.flist, fetcher)
        # Decoded once (a large image's metadata takes a tenth of a second), without the
        # collector: its passes over the entries cost a third more, and frozen after it,
        # later passes (the fetches' garbage) skip them.
        gc.disable()
        try:
            view = FlistView(_check(data, args.flist))
        finally:
            gc.freeze()
            gc.enable()
        meter = Meter.on_stderr()
        meter.phase("extract", 0, 0)
        started = trio.current_time()
        try:
            written = await extract_view(
                view, args.target, BlockSource(fetcher, cache, hot_bytes=0),
                parallel=args.parallel, ahead_bytes=args.ahead * 1024 * 1024, skipped=skipped,
                # A call per file from the writer's thread: only when the meter is drawn.
                progress=(lambda done, total: meter.update(0, done, size=total))
                if meter.show else None,
            )
        except ZosError as exc:
            raise UserError(str(exc)) from None
        finally:
            meter.finish()
        extract_summary(args, len(view.entries), written, skipped, trio.current_time() - started)
        return 0

    return _run(main)


def _record(args: argparse.Namespace) -> int:
    argv = list(args.argv or [])
    if not argv:
        raise UserError("give the command to run inside the image: --run COMMAND [ARG...]")
    async def main() -> int:
        fetcher = _fetcher(args)
        data = await _flist_bytes(args.flist, fetcher)
        _check(data, args.flist)
        cache = _cache(args)
        with tempfile.TemporaryDirectory(prefix="zosnode-record-") as mnt:
            async with mounted(data, mnt, fetcher, cache, prefetch=False) as m:
                proc = await trio.run_process(["chroot", mnt, *argv], check=False)
                order = list(m.source.first_use)
        from zosnode.flist.writer import with_hint

        hinted = with_hint(decode(data), order)
        out = Path(args.output)
        try:
            write_atomic(out, hinted)
        except OSError as exc:
            raise UserError(f"{out}: {exc.strerror}") from None
        print(f"{flist_id(hinted)}  ({len(order)} blocks hinted; command exited"
              f" {proc.returncode})")
        return 0

    return _run(main)


def _remote_options(p: argparse.ArgumentParser, *, hub_required: bool) -> None:
    p.add_argument("--hub", action="append", default=[], metavar="URL",
                   required=hub_required, help="a hub or mirror base URL (repeatable)")
    p.add_argument("--cache", metavar="DIR",
                   help=f"disk block cache (default: RAM, {RAM_CACHE})")
    p.add_argument("--cache-size", type=int, default=1024, metavar="MIB",
                   help="cache bound in MiB (default 1024)")
    p.add_argument("--deadline", type=float, default=30.0, metavar="S",
                   help="seconds to get one block before giving up (default 30)")


def register(commands: Any) -> None:
    p = add_command(commands, "mount", "mount an flist from hubs (foreground; Ctrl-C unmounts)",
                    _mount)
    p.add_argument("flist", help="an flist file, or its id to fetch from the hubs")
    p.add_argument("mountpoint")
    p.add_argument("--no-prefetch", action="store_true", help="ignore the boot-order hint")
    _remote_options(p, hub_required=True)

    p = add_command(commands, "record-prefetch",
                    "run a command in the mounted image and record its block order as a hint",
                    _record)
    p.add_argument("flist", help="an flist file, or its id to fetch from the hubs")
    p.add_argument("-o", "--output", required=True, help="write the hinted flist here")
    p.add_argument("--run", dest="argv", nargs=argparse.REMAINDER, metavar="COMMAND",
                   help="the command and its arguments, run by chroot in the image (last)")
    _remote_options(p, hub_required=True)

    # `flist extract` belongs to flist_local (--store); add --hub to it.
    extract = commands.choices.get("extract")
    if extract is None:
        p = add_command(commands, "extract", "materialise an flist into an empty directory",
                        _extract_remote)
        p.add_argument("flist")
        p.add_argument("target")
        local: Callable[[argparse.Namespace], int] | None = None
    else:
        p = extract
        local = p.get_default("handler")
    _remote_options(p, hub_required=False)
    p.add_argument("--parallel", type=int, default=8, help="blocks fetched at once (--hub)")
    p.add_argument("--ahead", type=int, default=64, metavar="MIB",
                   help="decoded blocks held ahead of the writer, in MiB (--hub; default 64)")

    def dispatch(args: argparse.Namespace) -> int:
        if args.hub:
            if getattr(args, "store", None):
                raise UserError("give --store or --hub, not both")
            if args.parallel < 1:
                raise UserError("--parallel must be at least 1")
            if args.ahead < 1:
                raise UserError("--ahead must be at least 1 MiB")
            return _extract_remote(args)
        if local is None:
            raise UserError("give --hub URL (or --store DIR) to read blocks from")
        if not getattr(args, "store", None):
            raise UserError("give --store DIR or --hub URL to read blocks from")
        return local(args)

    p.set_defaults(handler=dispatch)
