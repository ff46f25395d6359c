"""Making a verified flist readable at a directory: extracted and sealed, or FUSE."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Protocol

import trio

from zosnode.agent.boot.errors import ReleaseFailed
from zosnode.cache.store import BlockCache
from zosnode.fetch.fetcher import Fetcher
from zosnode.flist.blocks import BlockRef
from zosnode.flist.extract import extract
from zosnode.flist.view import FlistView
from zosnode.mount.service import detach
from zosnode.trust.manifest import FlistPin

Say = Callable[[str], None]


class Mounter(Protocol):
    async def serve(
        self,
        pin: FlistPin,
        flist: bytes,
        where: Path,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Make `flist` readable at `where`, `started()`, and undo it when cancelled."""


# -- real I/O: materialising an flist ---------------------------------------------------------


class _Held:
    """Blocks already fetched and checked, handed to the synchronous extractor."""

    def __init__(self, blocks: dict[str, bytes]) -> None:
        self.blocks = blocks

    def get(self, ref: BlockRef) -> bytes:
        return self.blocks[ref.id]


class ExtractMounter:
    """Materialise an flist into a directory (tmpfs on a node) through the block cache.

    Blocks the cache already holds are not fetched again, which is what makes
    an upgrade cost only its changed blocks. Every block is verified by the
    fetcher (its hash) and again by the extractor before a byte is written.
    """

    def __init__(
        self, fetcher: Callable[[], Fetcher], cache: BlockCache, say: Say | None = None
    ) -> None:
        """`fetcher()` is asked at each mount: the sources follow the running manifest."""
        self.fetcher = fetcher
        self.cache = cache
        self.say = say
        self.fetched_blocks = 0  # over the agent's life: what upgrades cost
        self.fetched_bytes = 0

    async def serve(
        self,
        pin: FlistPin,
        flist: bytes,
        where: Path,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        view = FlistView.from_bytes(flist)
        fetcher = self.fetcher()
        blocks: dict[str, bytes] = {}
        fetched = [0, 0]

        def fetcher_for(ref: BlockRef) -> Callable[[], Awaitable[bytes]]:
            async def fetch() -> bytes:
                data = await fetcher.fetch_block(ref.id, max_size=ref.stored_size)
                fetched[0] += 1
                fetched[1] += len(data)
                return data

            return fetch

        for ref in view.flist.blocks().values():
            blocks[ref.id] = await self.cache.get_or_fetch(ref.id, fetcher_for(ref))
        self.fetched_blocks += fetched[0]
        self.fetched_bytes += fetched[1]
        if self.say is not None:
            self.say(f"flist {pin.name} {pin.id[:12]}: {len(blocks)} blocks, fetched "
                     f"{fetched[0]} ({fetched[1]} bytes), the rest from the cache")
        sealed = False
        try:
            await trio.to_thread.run_sync(extract, view, _Held(blocks), where)
            blocks.clear()
            # Root (every service on a node) could otherwise rewrite verified
            # files after the check: the tree becomes a read-only bind mount.
            sealed = seal_readonly(where)
            task_status.started()
            await trio.sleep_forever()
        finally:
            if sealed:
                detach(where)
            shutil.rmtree(where, ignore_errors=True)


_MS_RDONLY, _MS_REMOUNT, _MS_BIND = 1, 32, 4096


def seal_readonly(path: Path) -> bool:
    """Bind-mount `path` onto itself read-only; False when not root (nothing to seal with)."""
    if os.geteuid() != 0:
        return False
    # The interpreter's own symbols: find_library needs ldconfig, which no
    # initramfs has.
    libc = ctypes.CDLL(None, use_errno=True)
    target = os.fsencode(path)
    if libc.mount(target, target, None, _MS_BIND, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bind mount of {path}: {os.strerror(err)}")
    if libc.mount(None, target, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY, None) != 0:
        err = ctypes.get_errno()
        detach(path)
        raise OSError(err, f"read-only remount of {path}: {os.strerror(err)}")
    return True


class FuseChildMounter:
    """Mount each flist through FUSE in a child process of its own.

    pyfuse3 serves one mount per process, and an upgrade needs the old and
    the new release mounted at once, so each flist gets a child: `command`
    (the argv of `zosnode flist mount`) plus `FLIST_FILE MOUNTPOINT --cache DIR
    [--hub URL]...`. The child prints a line containing `mounted` once the
    mount is live and unmounts on SIGTERM. Children share the block cache directory, so a block
    one release fetched is not fetched again for the next. The flist file is
    the one `Hubs.flist` already checked against the pinned id.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        mirrors: Callable[[], Sequence[str]],
        cache_dir: Path,
        flist_dir: Path,
        say: Say | None = None,
        start_timeout_s: float = 30.0,
    ) -> None:
        self.command = list(command)
        self.mirrors = mirrors  # asked at each mount: they follow the running manifest
        self.cache_dir = cache_dir
        self.flist_dir = flist_dir
        self.say = say
        self.start_timeout_s = start_timeout_s

    async def serve(
        self,
        pin: FlistPin,
        flist: bytes,
        where: Path,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self.flist_dir.mkdir(parents=True, exist_ok=True)
        path = self.flist_dir / pin.id
        if not path.exists():
            tmp = path.with_name(f".{pin.id}.tmp")
            tmp.write_bytes(flist)
            tmp.rename(path)
        argv = [*self.command, str(path), str(where), "--cache", str(self.cache_dir)]
        for mirror in self.mirrors():
            argv += ["--hub", mirror]
        proc = await trio.lowlevel.open_process(
            # Same process group as the agent: a signal to the group reaches it too.
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        assert proc.stdout is not None
        try:
            seen = b""
            with trio.move_on_after(self.start_timeout_s):
                while b"mounted" not in seen:
                    chunk = await proc.stdout.receive_some(4096)
                    if not chunk:
                        break
                    seen = (seen + chunk)[-8192:]
            if b"mounted" not in seen:
                text = seen.decode(errors="replace").strip()[-300:]
                raise ReleaseFailed(f"FUSE mount of {pin.name} at {where} failed: {text}")
            if self.say is not None:
                self.say(f"flist {pin.name} {pin.id[:12]}: FUSE mount at {where} "
                         f"(pid {proc.pid})")
            task_status.started()
            # Keep draining the child's output so it never blocks on a full pipe.
            while await proc.stdout.receive_some(4096):
                pass
            await proc.wait()
            # Not fatal to the agent: the release's services will fail and be reported.
            if self.say is not None:
                self.say(f"flist {pin.name}: FUSE mount at {where} ended "
                         f"(exit {proc.returncode})")
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await _end_child(proc)
                if os.path.ismount(where):
                    detach(where)


async def _end_child(proc: trio.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        with trio.move_on_after(5):
            await proc.wait()
    if proc.returncode is None:
        proc.kill()
        await proc.wait()
