"""Boot media built on request, cached by content key, bounded, built once.

A medium's key (`MediaRequest.key`) covers everything its bytes depend on:
kind, farm, channel, the hub URL it points at, the extra kernel arguments
and the hashes of the channel's kernel and initramfs. The cache is a
directory of finished files named by key, bounded in count and in bytes,
least recently used evicted first, each written whole (`zosnode.atomicfile`;
builds happen in a private scratch directory beside it, so the cache
directory only ever holds finished media and one `.tmp-` file per build
being placed).

Concurrency: requests for a key being built wait for that build (one build
per key, a per-key event); at most `max_builds` builds run at once, each in
a worker thread (the builders run xorriso, grub-mkstandalone and mtools as
subprocesses), so the event loop keeps serving. Room is made before a build
starts (a slot is reserved), so the file count never exceeds the bound; the
byte bound may be passed, while a build is being placed, by at most
`max_builds` media.

Media are served from memory (a few MB each: a hybrid ISO is ~2.3 MB), read
once from the cache file: evicting a file never cuts a download in flight.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from zosnode.atomicfile import TMP_PREFIX, write_atomic
from zosnode.bootmedia.errors import BuildInputError
from zosnode.bootmedia.ipxe import BootConfig, render_ipxe
from zosnode.bootmedia.media import build_efi_image, build_iso
from zosnode.errors import ZosError

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_FILES = 64
DEFAULT_MAX_BUILDS = 2
MAX_MEDIUM_BYTES = 64 * 1024 * 1024
# How long a request waits for a build slot (a build itself is bounded by
# its subprocesses' timeouts, zosnode.bootmedia.media).
SLOT_WAIT_S = 50.0

Builder = Callable[[BootConfig, Path], None]


class MediaBuildError(ZosError):
    """Building a medium failed on the hub (a missing tool, a failed subprocess)."""


class MediaBusy(MediaBuildError):
    """No build slot came free in time (the client may retry)."""


def _efi_binary(cfg: BootConfig, out: Path) -> None:
    """BOOTX64.EFI alone: built as the EFI image and copied out of its FAT."""
    with tempfile.TemporaryDirectory(prefix="zosnode-efibin-") as tmp:
        img = Path(tmp) / "efi.img"
        build_efi_image(cfg, img)
        proc = subprocess.run(["mcopy", "-i", str(img), "::/EFI/BOOT/BOOTX64.EFI", str(out)],
                              capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise BuildInputError(f"mcopy failed: {proc.stderr.strip()[-200:]}")


def _ipxe(cfg: BootConfig, out: Path) -> None:
    out.write_text(render_ipxe(cfg))


BUILDERS: dict[str, Builder] = {
    "ipxe": _ipxe,
    "iso": build_iso,
    "usb": build_iso,  # the hybrid image: the same bytes boot from a USB stick
    "efi-img": build_efi_image,
    "efi": _efi_binary,
}


@dataclass
class _Build:
    done: trio.Event = field(default_factory=trio.Event)
    data: bytes | None = None
    error: MediaBuildError | None = None


@dataclass(frozen=True)
class MediaCacheStats:
    files: int
    bytes: int
    builds: int  # builds started since the hub started
    hits: int
    waits: int  # requests that waited for a build of the same key


class MediaCache:
    def __init__(self, directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_files: int = DEFAULT_MAX_FILES, max_builds: int = DEFAULT_MAX_BUILDS,
                 builders: dict[str, Builder] | None = None) -> None:
        if max_bytes < 1 or max_files < 1 or not 1 <= max_builds <= max_files:
            raise ValueError("media cache bounds must be at least 1, and builds at most "
                             "the files kept")
        self.directory = directory
        self.scratch = directory.parent / (directory.name + ".building")
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.builders = builders if builders is not None else BUILDERS
        self._slots = trio.CapacityLimiter(max_builds)
        self._entries: OrderedDict[str, int] = OrderedDict()  # key -> size, LRU first
        self._reserved = 0
        self._building: dict[str, _Build] = {}
        self._builds = self._hits = self._waits = 0
        self._loaded = False

    def _load(self) -> None:
        """Adopt the files a previous run left (oldest first); clear old scratch."""
        self._loaded = True
        self.directory.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.scratch, ignore_errors=True)
        found = []
        for entry in os.scandir(self.directory):
            if entry.name.startswith(TMP_PREFIX):
                os.unlink(entry.path)
            elif entry.is_file() and len(entry.name) == 32:
                st = entry.stat()
                found.append((st.st_mtime, entry.name, st.st_size))
        for _, name, size in sorted(found):
            self._entries[name] = size
        self._evict(room_for=0)

    def stats(self) -> MediaCacheStats:
        return MediaCacheStats(len(self._entries), sum(self._entries.values()), self._builds,
                          self._hits, self._waits)

    async def get(self, key: str, kind: str, cfg: BootConfig) -> bytes:
        """The medium's bytes: from the cache, from a build in progress, or built now."""
        if not self._loaded:
            self._load()
        if len(key) != 32 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"bad media key {key!r}")
        if key in self._entries:
            data = self._read(key)
            if data is not None:
                self._entries.move_to_end(key)
                self._hits += 1
                return data
            self._entries.pop(key, None)  # removed behind our back: build again
        running = self._building.get(key)
        if running is not None:
            self._waits += 1
            await running.done.wait()
            if running.data is None:
                raise running.error or MediaBusy("the build was abandoned; try again")
            return running.data
        build = self._building[key] = _Build()
        try:
            slot = False
            with trio.move_on_after(SLOT_WAIT_S):
                await self._slots.acquire()
                slot = True
            if slot:
                try:
                    build.data = await self._build(key, kind, cfg)
                finally:
                    self._slots.release()
            else:
                build.error = MediaBusy("media builds are busy; try again in a minute")
        except MediaBuildError as exc:
            build.error = exc
        finally:
            if build.data is None and build.error is None:  # cancelled: the client went
                build.error = MediaBusy("the build was abandoned; try again")
            build.done.set()
            del self._building[key]
        if build.error is not None:
            raise build.error
        assert build.data is not None
        return build.data

    def _read(self, key: str) -> bytes | None:
        try:
            with open(self.directory / key, "rb") as f:
                return f.read(MAX_MEDIUM_BYTES + 1)
        except FileNotFoundError:
            return None

    async def _build(self, key: str, kind: str, cfg: BootConfig) -> bytes:
        builder = self.builders[kind]
        self._builds += 1
        self._evict(room_for=1)
        self._reserved += 1
        # Shielded: a build that started finishes and is accounted for (the
        # file is in the cache directory) even if its client went away.
        with trio.CancelScope(shield=True):
            try:
                data = await trio.to_thread.run_sync(self._build_sync, key, builder, cfg)
            finally:
                self._reserved -= 1
            if data is not None:
                self._entries[key] = len(data)
                self._evict(room_for=0)
                if key not in self._entries:  # larger than the whole byte bound: not kept
                    self._unlink(key)
        if data is None:
            raise MediaBuildError(f"the {kind} medium is over {MAX_MEDIUM_BYTES} bytes")
        return data

    def _build_sync(self, key: str, builder: Builder, cfg: BootConfig) -> bytes | None:
        self.scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.scratch) as tmp:
            out = Path(tmp) / "medium"
            try:
                builder(cfg, out)
            except BuildInputError as exc:
                raise MediaBuildError(f"building the medium failed: {exc}") from None
            except OSError as exc:
                raise MediaBuildError(f"building the medium failed: {exc}") from None
            if out.stat().st_size > MAX_MEDIUM_BYTES:
                return None
            data = out.read_bytes()
        write_atomic(self.directory / key, data, durable=False)
        return data

    def _evict(self, room_for: int) -> None:
        """Drop least recently used files until `room_for` more fit the count bound
        (and the kept ones the byte bound)."""
        total = sum(self._entries.values())
        while self._entries and (
                len(self._entries) + self._reserved + room_for > self.max_files
                or total > self.max_bytes):
            key, size = self._entries.popitem(last=False)
            total -= size
            self._unlink(key)

    def _unlink(self, key: str) -> None:
        try:
            os.unlink(self.directory / key)
        except FileNotFoundError:
            pass
