"""The FUSE mount child `zosnode _mount-child REPORT_FD`, one per flist, started by the agent
(docs/datapath.md): a `MountRequest` on stdin, reports on REPORT_FD; SIGTERM/SIGINT: exit 0."""

import contextlib
import os
import signal
import sys
import types
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import trio

from zosnode.cache.errors import CacheError
from zosnode.cache.store import BlockCache
from zosnode.errors import ZosError
from zosnode.fetch.fetcher import Fetcher
from zosnode.flist.format import flist_id
from zosnode.mount import protocol
from zosnode.mount.errors import InvalidFlist, MountFailed, MountpointUnusable, ProtocolRefused
from zosnode.mount.protocol import CacheCounts, Failure, FailureKind, MountRequest, Ready, Report

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
COUNTS_EVERY_S = 2.0


Send = Callable[[Report], None]


def _send(fd: int, report: Report) -> None:
    """One report on the pipe; a reader that is gone (the agent died) is not an error."""
    frame = memoryview(protocol.encode_report(report))
    with contextlib.suppress(OSError):
        while frame:  # at most ~2 KiB: one write, blocking only if the agent stopped reading
            frame = frame[os.write(fd, frame):]


_KIND_OF = ((InvalidFlist, FailureKind.FLIST), (MountpointUnusable, FailureKind.MOUNTPOINT),
            (MountFailed, FailureKind.FUSE))


def _failure_of(exc: BaseException, ready: bool) -> Failure:
    """The first real error in nested groups, typed by class (never text); after Ready: internal."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    kind = next((k for t, k in _KIND_OF if isinstance(exc, t)), FailureKind.INTERNAL)
    text = str(exc) if isinstance(exc, ZosError) else f"{type(exc).__name__}: {exc}"
    return Failure.of(FailureKind.INTERNAL if ready else kind, text)


async def _send_counts(cache: BlockCache, send: Send) -> None:
    """The cache's counts when they change (the heartbeat's hit rate)."""
    sent = None
    while True:
        counts = CacheCounts(**{n: getattr(cache.stats, n) for n in protocol.COUNTS})
        if counts != sent:
            send(counts)
            sent = counts
        await trio.sleep(COUNTS_EVERY_S)


async def serve(request: MountRequest, send: Send) -> int:
    """Mount, report Ready, serve until a signal (0) or the mount ends (fatal, 1)."""
    try:  # pyfuse3 is loaded only here: a missing one is a FUSE failure, reported
        from zosnode.mount.service import serve_flist
    except ImportError as exc:
        send(Failure.of(FailureKind.FUSE, f"no FUSE support: {exc}"))
        return EXIT_FAILED
    try:
        Path(request.cache_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
        cache = BlockCache(Path(request.cache_dir), request.cache_bytes, durable=request.durable)
    except (OSError, CacheError) as exc:
        send(Failure.of(FailureKind.CACHE, f"{request.cache_dir}: {exc}"))
        return EXIT_FAILED
    fetcher = Fetcher(list(request.hubs), deadline_s=request.block_deadline_ms / 1000)
    unmounted = ready = False
    try:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
            async with trio.open_nursery() as nursery:

                async def watch() -> None:
                    async for _ in received:
                        break
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch)
                async with trio.open_nursery() as mount:
                    await mount.start(partial(
                        serve_flist, request.flist, request.mountpoint, fetcher, cache,
                        prefetch=request.prefetch, hot_bytes=request.hot_bytes))
                    ready = True
                    send(Ready(flist_id(request.flist)))
                    nursery.start_soon(_send_counts, cache, send)
                unmounted = True  # serve_flist returned by itself: unmounted from outside
                nursery.cancel_scope.cancel()
    except Exception as exc:  # noqa: BLE001 - every failure is reported, typed
        send(_failure_of(exc, ready))
        return EXIT_FAILED
    if not unmounted:  # a signal
        return EXIT_OK
    send(Failure.of(FailureKind.UNMOUNTED, f"{request.mountpoint} was unmounted from outside"))
    return EXIT_FAILED


def main(argv: Sequence[str], stdin: int = 0) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("zosnode: error: _mount-child is started by the node agent: "
              "zosnode _mount-child REPORT_FD", file=sys.stderr)
        return EXIT_USAGE
    try:
        os.fstat(int(argv[0]))
    except OSError:
        print(f"zosnode: error: _mount-child: report fd {argv[0]} is not open", file=sys.stderr)
        return EXIT_USAGE
    send = partial(_send, int(argv[0]))
    # Loaded before the request comes (the agent may start us early); serve() reports a failure.
    # pyfuse3 imports importlib.metadata (email, zipfile: ~0.2 s of a boot's one emulated CPU)
    # for its __version__ alone: a stand-in, gone once it is loaded, has it "unknown".
    stand_in = types.ModuleType("importlib.metadata")  # version(): a KeyError for every name
    vars(stand_in).update(PackageNotFoundError=LookupError, version={}.__getitem__)
    sys.modules.setdefault("importlib.metadata", stand_in)  # the real one, if loaded, stays
    with contextlib.suppress(ImportError):
        import zosnode.mount.service  # noqa: F401
    if sys.modules.get("importlib.metadata") is stand_in:
        del sys.modules["importlib.metadata"]
    data = bytearray()  # to EOF, or one byte past the largest frame: decoding refuses it
    cap = protocol.MAX_REQUEST + protocol.HEADER
    try:
        while len(data) <= cap and (chunk := os.read(stdin, 1 << 20)):
            data += chunk
        request = protocol.decode_request(bytes(data))
    except (ProtocolRefused, OSError) as exc:
        send(Failure.of(FailureKind.REQUEST, f"the request: {exc}"))
        return EXIT_USAGE
    return trio.run(serve, request, send)
