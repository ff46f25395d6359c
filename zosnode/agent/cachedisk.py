"""The local disk as an untrusted block cache, only when asked (docs/node-run.md): an unlabelled
filesystem is never mounted, a non-blank disk never formatted, a block checked once per boot
before first use (`FirstUse`); a failing disk leaves the node on its RAM cache, never failed."""

import contextlib
import errno
import functools
import os
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from zosnode.agent import pid1
from zosnode.agent.boot.mounters import Mounter
from zosnode.cache.store import BlockCache
from zosnode.errors import ZosError
from zosnode.fetch.fetcher import Fetcher
from zosnode.flist.blocks import block_id
from zosnode.flist.format import decode as decode_flist
from zosnode.mount.mountpoint import libc
from zosnode.mount.protocol import COUNTS, CacheCounts
from zosnode.trust.manifest import FlistPin
from zosnode.wire.heartbeat import CacheReport, DiskReport, HardwareReport

LABEL = "ZOSCACHE"
MIB = 1 << 20
MOUNTPOINT = Path("/run/zosnode-cache")
# ext2/3/4 superblock: at byte 1024; magic 0xEF53 at +56, uuid at +104, label at +120.
_SB, _MAGIC, _UUID, _NAME = 1024, 56, 104, 120
# (offset, bytes, name) of signatures a disk in use carries near its start.
_SIGNATURES = ((510, b"\x55\xaa", "an MBR or boot sector"),
               (512, b"EFI PART", "a GPT"),
               (1080, b"\x53\xef", "an ext2/3/4 filesystem"),
               (0, b"XFSB", "an XFS filesystem"),
               (65600, b"_BHRfS_M", "a btrfs filesystem"),
               (0, b"LUKS\xba\xbe", "a LUKS volume"),
               (536, b"LVM2 001", "an LVM physical volume"),
               (4086, b"SWAPSPACE2", "swap space"),
               (4096, b"\xfc\x4e\x2b\xa9", "an md RAID member"),
               (32769, b"CD001", "an ISO 9660 image"))




@dataclass(frozen=True)
class Filesystem:
    device: str  # kernel name: "vdb", "nvme0n1p2"
    disk: str  # the whole disk it is on: "vdb", "nvme0n1"
    label: str
    uuid: str


def ext4_identity(head: bytes) -> tuple[str, str] | None:
    """(label, uuid) of the ext2/3/4 filesystem whose first 2 KiB are `head`; None if not one."""
    sb = head[_SB:_SB + 1024]
    if len(sb) < _NAME + 16 or sb[_MAGIC:_MAGIC + 2] != b"\x53\xef":
        return None
    label = sb[_NAME:_NAME + 16].split(b"\0", 1)[0].decode("ascii", "replace")
    u = sb[_UUID:_UUID + 16].hex()
    return label, f"{u[:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:]}"


def choose(spec: str, found: Sequence[Filesystem]) -> Filesystem | None:
    """The first, by device, that `zos.cache=<spec>` names (auto: LABEL=ZOSCACHE)."""
    kind, _, value = (f"LABEL={LABEL}" if spec == "auto" else spec).partition("=")
    return next((fs for fs in sorted(found, key=lambda f: f.device)
                 if (fs.label if kind == "LABEL" else fs.uuid) == value), None)


def signatures(head: bytes, tail: bytes) -> list[str]:
    """Why a disk whose first and last MiB are `head` and `tail` is not blank ([] if it is)."""
    found = [name for at, magic, name in _SIGNATURES if head[at:at + len(magic)] == magic]
    if tail[-512:].startswith(b"EFI PART") or b"EFI PART" in tail[-512 * 9:]:
        found.append("a backup GPT")
    if not found and (head.strip(b"\0") or tail.strip(b"\0")):
        found.append("data")
    return found


def bound(configured: int, fs_bytes: int) -> int:
    return max(1, min(configured, fs_bytes * 9 // 10))




def _disks(sys_block: Path) -> list[str]:
    try:
        names = sorted(p.name for p in sys_block.iterdir())
    except OSError:
        return []
    return [n for n in names if not n.startswith(("loop", "ram", "zram", "sr", "fd", "nbd",
                                                    "dm-", "md"))]


def filesystems(sys_block: Path = Path("/sys/class/block"), dev: Path = Path("/dev")
                ) -> list[Filesystem]:
    out = []
    for name in _disks(sys_block):
        try:
            with open(dev / name, "rb") as f:
                ident = ext4_identity(f.read(2048))
        except OSError:
            continue
        if ident is not None:
            entry = sys_block / name
            disk = entry.resolve().parent.name if (entry / "partition").exists() else name
            out.append(Filesystem(name, disk, *ident))
    return out


def blank_check(device: Path) -> list[str]:
    with open(device, "rb") as f:
        head = f.read(MIB)
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - MIB))
        tail = f.read(MIB)
    return signatures(head, tail)


def format_blank(device: Path, say: pid1.Say, mkfs: str = "/sbin/mke2fs") -> bool:
    """Make an ext4 `ZOSCACHE` on `device` if it is blank; False (and why, said) otherwise."""
    try:
        found = blank_check(device)
        why = f"it holds {', '.join(found)}" if found else None
    except OSError as exc:
        why = exc.strerror or str(exc)
    if why is None and not Path(mkfs).exists():
        why = f"no {mkfs} in this image"
    if why is not None:
        say(f"cache: not formatting {device}: {why}")
        return False
    try:
        # No mke2fs.conf in the initramfs: its built-in defaults define ext4; why it failed: stdout.
        done = subprocess.run([mkfs, "-q", "-t", "ext4", "-L", LABEL, "-m", "0", str(device)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, check=False, timeout=300, env={})
    except (OSError, subprocess.TimeoutExpired) as exc:
        say(f"cache: mke2fs {device}: {exc}")
        return False
    if done.returncode != 0:
        why = " ".join(done.stdout.decode(errors="replace").split())[:200]
        say(f"cache: mke2fs {device} failed: {why or f'exit status {done.returncode}'}")
        return False
    say(f"cache: formatted {device} as ext4 {LABEL}")
    return True


def _probe(target: Path) -> None:
    """Write, sync and remove a small file: a read-only or full disk shows here."""
    probe = target / ".probe"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, b"\0" * 4096)
        os.fsync(fd)
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)


@dataclass(frozen=True)
class CacheDisk:
    fs: Filesystem
    path: Path  # where it is mounted
    size_bytes: int  # the cache's bound on it


def open_cache(spec: str | None, format_device: str | None, configured_bytes: int, say: pid1.Say,
               *, wait_s: float = 3.0, mountpoint: Path = MOUNTPOINT,
               sys_block: Path = Path("/sys/class/block"), dev: Path = Path("/dev")
               ) -> CacheDisk | str:
    """Mounted and probed (formatted if asked), or why not; blocking. AHCI, NVMe disks come late."""
    spec = spec or "auto"
    if format_device is not None:
        name = format_device.removeprefix("/dev/")
        if not any(fs.disk == name for fs in filesystems(sys_block, dev)):
            format_blank(dev / name, say)
    deadline = time.monotonic() + wait_s
    while (fs := choose(spec, filesystems(sys_block, dev))) is None:
        if time.monotonic() >= deadline:
            return f"no filesystem matches zos.cache={spec}"
        time.sleep(0.2)
    if _read(sys_block / fs.device / "ro") == "1":
        return f"{fs.device} is read-only"
    mountpoint.mkdir(parents=True, exist_ok=True)
    # errors=remount-ro: a failing disk turns read-only instead of being written on.
    flags = pid1.MS_NOSUID | pid1.MS_NODEV | pid1.MS_NOEXEC | pid1.MS_NOATIME
    if err := pid1.mount(dev / fs.device, mountpoint, "ext4", flags, "errors=remount-ro"):
        return f"cannot mount {dev / fs.device}: {os.strerror(err)}"
    try:
        _probe(mountpoint)
        st = os.statvfs(mountpoint)
    except OSError as exc:
        why = {errno.EROFS: "read-only", errno.ENOSPC: "full"}.get(exc.errno or 0, "")
        libc().umount2(os.fsencode(mountpoint), 2)  # MNT_DETACH
        return f"{fs.device} is {why or 'unusable'}: {exc.strerror or exc}"
    return CacheDisk(fs, mountpoint, bound(configured_bytes, st.f_blocks * st.f_frsize))




def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""


def hardware(cache_disk: str | None, sys_block: Path = Path("/sys/block"),
             meminfo: Path = Path("/proc/meminfo")) -> HardwareReport:
    mem = next((int(line.split()[1]) * 1024 for line in _read(meminfo).splitlines()
                if line.startswith("MemTotal:")), 0)
    disks = []
    for name in _disks(sys_block):
        if not (sys_block / name / "device").exists():
            continue
        sectors = _read(sys_block / name / "size")
        model = _read(sys_block / name / "device" / "model")  # none on virtio
        disks.append(DiskReport(name[:32], int(sectors) * 512 if sectors.isdigit() else 0,
                                model[:64], "cache" if name == cache_disk else "untouched"))
    return HardwareReport(os.cpu_count() or 0, mem, tuple(disks[:64]))




class FirstUse:
    """A `Mounter` hashing the flist's blocks the untrusted disk holds first, once a boot: a bad one
    is dropped, fetched again, counted (readers hash too; this reports). `own`: its counts."""

    def __init__(self, inner: Mounter, cache: BlockCache, fetcher: Callable[[], Fetcher],
                 say: pid1.Say) -> None:
        self.inner, self.cache, self.fetcher, self.say = inner, cache, fetcher, say
        self.checked: set[str] = set()
        self.refetched = 0
        self.own = Counter[str]()

    def _check(self, ids: list[str]) -> list[str]:
        """The ids among `ids` that were on the disk but not as themselves (dropped)."""
        bad = []
        for bid in ids:
            corrupt = self.cache.stats.corrupt
            block = self.cache.get(bid)
            if block is not None and block_id(block) != bid:
                self.cache.discard(bid)
                bad.append(bid)
            elif block is None and self.cache.stats.corrupt > corrupt:
                bad.append(bid)
        return bad

    async def serve(self, pin: FlistPin, flist: bytes, where: Path, *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.vet(flist)
        await self.inner.serve(pin, flist, where, task_status=task_status)

    async def vet(self, flist: bytes) -> None:
        refs = decode_flist(flist).blocks()
        ids = [i for i in refs if i not in self.checked]
        self.checked.update(ids)
        before = _counts(self.cache.stats)
        try:
            for bid in await trio.to_thread.run_sync(self._check, ids):
                self.say(f"cache: block {bid[:16]} altered on the disk; dropped, fetching it again")
                self.refetched += 1
                fetch = functools.partial(self.fetcher().fetch_block, bid,
                                          max_size=refs[bid].stored_size)
                try:
                    await self.cache.get_or_fetch(bid, fetch)
                except (ZosError, OSError) as exc:
                    self.say(f"cache: block {bid[:16]}: {exc}; the readers will fetch it")
        finally:
            self.own.update(_counts(self.cache.stats) - before)


def _counts(stats: object) -> Counter[str]:
    return Counter({n: getattr(stats, n) for n in COUNTS})


def cache_report(place: str, cache: BlockCache, note: str, first_use: FirstUse | None,
                 children: Callable[[], CacheCounts] | None) -> CacheReport:
    """The heartbeat's cache state, the agent's and FUSE children's; blocking (sums files)."""
    readers = _counts(cache.stats)
    refetched = 0
    if first_use is not None:
        readers.subtract(first_use.own)
        refetched = first_use.refetched
    if children is not None:
        readers.update(_counts(children()))
    refetched += readers["corrupt"] + readers["discarded"]
    if not note and readers["write_errors"]:
        note = f"{readers['write_errors']} blocks not kept (write errors)"
    return CacheReport(place, cache.max_bytes, used_bytes(cache.path), hits=readers["hits"],
                       misses=readers["misses"], refetched=refetched, note=note)


def used_bytes(directory: Path, limit: int = 1_000_000) -> int:
    total = n = 0
    with contextlib.suppress(OSError), os.scandir(directory) as shards:
        for shard in shards:
            if not shard.is_dir(follow_symlinks=False):
                continue
            with os.scandir(shard.path) as files:
                for f in files:
                    total += f.stat(follow_symlinks=False).st_size
                    n += 1
                    if n >= limit:
                        return total
    return total
