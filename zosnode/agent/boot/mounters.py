"""Making a verified flist readable at a directory: extracted and sealed, or FUSE."""

import contextlib
import os
import shutil
from collections.abc import AsyncGenerator, Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import Protocol

import trio

from zosnode.agent import pid1, spare
from zosnode.agent.boot.errors import ReleaseFailed
from zosnode.agent.services.runner import wait_exit
from zosnode.cache.store import BlockCache
from zosnode.fetch.fetcher import Fetcher
from zosnode.fetch.pipeline import extract_view
from zosnode.fetch.source import BlockSource
from zosnode.flist.view import FlistView
from zosnode.mount import protocol
from zosnode.mount.errors import ProtocolRefused, ProtocolUsageError
from zosnode.mount.mountpoint import detach
from zosnode.mount.protocol import COUNTS, CacheCounts, Failure, FailureKind, ReportReader
from zosnode.trust.manifest import FlistPin


class Mounter(Protocol):
    async def serve(self, pin: FlistPin, flist: bytes, where: Path, *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Make `flist` readable at `where`, `started()`, and undo it when cancelled."""


class ExtractMounter:
    """Extract an flist, verified, through the block cache: an upgrade fetches new blocks only."""

    def __init__(self, fetcher: Callable[[], Fetcher], cache: BlockCache, say: pid1.Say) -> None:
        self.fetcher = fetcher  # asked at each mount: the sources follow the running manifest
        self.cache, self.say = cache, say

    async def serve(self, pin: FlistPin, flist: bytes, where: Path, *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        view = FlistView.from_bytes(flist)
        source = BlockSource(self.fetcher(), self.cache, hot_bytes=0)
        sealed = False
        try:
            await extract_view(view, where, source)
            self.say(f"flist {pin.name} {pin.id[:12]}: {len(view.flist.blocks())} blocks,"
                     f" fetched {source.fetched_blocks} ({source.fetched_bytes} bytes),"
                     " the rest from the cache")
            # Root (every service) could rewrite verified files: seal with a read-only bind.
            sealed = seal_readonly(where)
            task_status.started()
            await trio.sleep_forever()
        finally:
            if sealed:
                detach(where)
            shutil.rmtree(where, ignore_errors=True)


MS_REMOUNT, MS_BIND = 32, 4096


def seal_readonly(path: Path) -> bool:
    """Bind-mount `path` onto itself read-only; False when not root (nothing to seal with)."""
    if os.geteuid() != 0:
        return False
    if err := pid1.mount(path, path, "", MS_BIND):
        raise OSError(err, f"bind mount of {path}: {os.strerror(err)}")
    if err := pid1.mount(path, path, "", MS_BIND | MS_REMOUNT | pid1.MS_RDONLY):
        detach(path)
        raise OSError(err, f"read-only remount of {path}: {os.strerror(err)}")
    return True


class ChildLost(Enum):
    """How a mount child can fail without saying why (its own reports are `FailureKind`)."""

    TIMEOUT = "timeout"  # no report within the start deadline
    EXITED = "exited"  # the report pipe closed with nothing on it
    GARBLED = "garbled"  # it sent bytes that are not the protocol, or the wrong flist


class MountChildFailed(ReleaseFailed):
    """A FUSE mount child did not mount; `kind` says why, the text is only for people."""

    def __init__(self, kind: FailureKind | ChildLost, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class FuseChildMounter:
    """Each flist a FUSE mount in a child of its own (pyfuse3 serves one mount a process, an
    upgrade needs two), all sharing one cache directory. The child (`command`, its report pipe's
    number) reads a `MountRequest` on stdin, reports `Ready` or `Failure`, unmounts on SIGTERM."""

    def __init__(self, command: Sequence[str], *, mirrors: Callable[[], Sequence[str]],
                 cache_dir: Path, say: pid1.Say, cache_bytes: int = 512 * 1024 * 1024,
                 durable: bool = False, start_timeout_s: float = 30.0) -> None:
        self.command = list(command)
        self.mirrors = mirrors  # asked at each mount: they follow the running manifest
        self.cache_dir, self.cache_bytes, self.durable = cache_dir, cache_bytes, durable
        self.say, self.start_timeout_s = say, start_timeout_s
        # The running children's last cache counts, and the sum of those that ended.
        self._counts: dict[int, CacheCounts] = {}
        self._ended = CacheCounts(0, 0, 0, 0, 0, 0)

    def cache_counts(self) -> CacheCounts:
        return _sum([self._ended, *self._counts.values()])

    async def serve(self, pin: FlistPin, flist: bytes, where: Path, *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            frame = protocol.encode_request(protocol.MountRequest(
                flist=flist, mountpoint=str(where.absolute()), hubs=tuple(self.mirrors()),
                cache_dir=str(self.cache_dir.absolute()), cache_bytes=self.cache_bytes,
                durable=self.durable, block_deadline_ms=30_000, hot_bytes=64 << 20,
                prefetch=True))
        except ProtocolUsageError as exc:
            raise MountChildFailed(FailureKind.REQUEST, f"mount of {pin.name}: {exc}") from None
        ahead = spare.spares.pop(tuple(self.command), None)
        proc, read_fd = ahead if ahead is not None else spare.spawn(self.command)
        assert proc.stdin is not None
        stdin = trio.lowlevel.FdStream(os.dup(proc.stdin.fileno()))
        proc.stdin.close()
        reports = trio.lowlevel.FdStream(read_fd)
        stream = self._reports(reports, ReportReader(), proc.pid)
        mine = False  # only a mount this child made is ours to detach
        try:
            first = await self._first_report(stdin, frame, stream)
            if isinstance(first, Failure):
                raise MountChildFailed(first.kind, f"FUSE mount of {pin.name} at {where}: "
                                       f"{first.kind.value}: {first.message}")
            assert isinstance(first, protocol.Ready)  # the reader takes nothing else first
            if first.flist_id != pin.id:
                raise MountChildFailed(ChildLost.GARBLED, f"FUSE mount of {pin.name}: the "
                                       f"child serves {first.flist_id[:12]}, not {pin.id[:12]}")
            mine = True
            self.say(f"flist {pin.name} {pin.id[:12]}: FUSE mount at {where} "
                     f"(pid {proc.pid}){', started ahead' if ahead else ''}")
            task_status.started()
            ended = ""
            try:
                async for report in stream:
                    if isinstance(report, Failure):
                        ended = f"{report.kind.value}: {report.message}"
            except ProtocolRefused as exc:
                ended = f"garbled report: {exc}"
            await wait_exit(proc)
            # Not fatal to the agent: the release's services will fail and be reported.
            self.say(f"flist {pin.name}: FUSE mount at {where} ended "
                     f"(exit {proc.returncode}{': ' + ended if ended else ''})")
            await trio.sleep_forever()
        finally:
            last = self._counts.pop(proc.pid, None)
            if last is not None:
                self._ended = _sum([self._ended, last])
            with trio.CancelScope(shield=True):
                await stream.aclose()
                await reports.aclose()
                await stdin.aclose()
                if proc.poll() is None:
                    proc.terminate()
                    with trio.move_on_after(5):
                        await wait_exit(proc)
                if proc.poll() is None:
                    proc.kill()
                    await wait_exit(proc)
                if mine and os.path.ismount(where):
                    detach(where)

    async def _reports(self, reports: trio.lowlevel.FdStream, reader: ReportReader, pid: int
                       ) -> AsyncGenerator[protocol.Report, None]:
        """The child's reports until its pipe closes, its cache counts kept (not yielded)."""
        while chunk := await reports.receive_some(4096):
            for report in reader.feed(chunk):
                if isinstance(report, CacheCounts):
                    self._counts[pid] = report
                else:
                    yield report
        reader.eof()

    async def _first_report(self, stdin: trio.lowlevel.FdStream, frame: bytes,
                            stream: AsyncGenerator[protocol.Report, None]) -> protocol.Report:
        with trio.move_on_after(self.start_timeout_s):
            # It may have died early: what it reported (if anything) says why.
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stdin.send_all(frame)
                await stdin.aclose()
            try:
                async for report in stream:
                    return report
            except ProtocolRefused as exc:
                raise MountChildFailed(ChildLost.GARBLED,
                                       f"the FUSE mount child's report: {exc}") from None
            raise MountChildFailed(ChildLost.EXITED, "the FUSE mount child exited without a report")
        raise MountChildFailed(ChildLost.TIMEOUT,
                               f"no report from the FUSE mount child in {self.start_timeout_s:g} s")


def _sum(counts: list[CacheCounts]) -> CacheCounts:
    return CacheCounts(**{n: sum(getattr(c, n) for c in counts) for n in COUNTS})
