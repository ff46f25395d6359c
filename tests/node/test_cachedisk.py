"""The cache disk's pure parts and its checks on crafted images: labels, the format
refusal rule, the size bound, the hardware report, and the per-boot first-use check."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import trio

from tests.datapath.conftest import build_flist, cache_entry
from zosnode.agent import cachedisk
from zosnode.agent.cachedisk import Filesystem, FirstUse, choose, ext4_identity, signatures
from zosnode.cache.store import SEED, BlockCache
from zosnode.flist.format import decode as decode_flist
from zosnode.mount.protocol import CacheCounts

MIB = 1 << 20
MKFS = shutil.which("mkfs.ext4") or shutil.which("mkfs.ext4", path="/usr/sbin:/sbin")


def superblock(label: bytes, uid: bytes = b"\x11" * 16) -> bytes:
    sb = bytearray(2048)
    sb[1024 + 56:1024 + 58] = b"\x53\xef"
    sb[1024 + 104:1024 + 120] = uid
    sb[1024 + 120:1024 + 120 + len(label)] = label
    return bytes(sb)


def test_crafted_superblock_label_and_uuid() -> None:
    assert ext4_identity(superblock(b"ZOSCACHE")) == (
        "ZOSCACHE", "11111111-1111-1111-1111-111111111111")
    assert ext4_identity(superblock(b"A" * 16))[0] == "A" * 16  # type: ignore[index]
    assert ext4_identity(bytes(2048)) is None  # no magic
    assert ext4_identity(superblock(b"ZOSCACHE")[:1100]) is None  # short read


@pytest.mark.skipif(MKFS is None, reason="needs mkfs.ext4 (e2fsprogs)")
def test_label_of_a_real_mkfs_image(tmp_path: Path) -> None:
    img = tmp_path / "disk.img"
    with open(img, "wb") as f:
        f.truncate(8 * MIB)
    u = str(uuid.uuid4())
    subprocess.run([str(MKFS), "-q", "-F", "-L", "ZOSCACHE", "-U", u, str(img)], check=True)
    assert ext4_identity(img.read_bytes()[:2048]) == ("ZOSCACHE", u)
    assert "an ext2/3/4 filesystem" in cachedisk.blank_check(img)


def fake_block_tree(tmp_path: Path, disks: dict[str, bytes]) -> tuple[Path, Path]:
    """/sys/class/block and /dev look-alikes: `name` -> the first bytes of the device."""
    sys_block, dev = tmp_path / "sys", tmp_path / "dev"
    sys_block.mkdir()
    dev.mkdir()
    for name, head in disks.items():
        (sys_block / name).mkdir()
        (dev / name).write_bytes(head)
    return sys_block, dev


def test_auto_takes_the_first_labelled_by_device_name(tmp_path: Path) -> None:
    sys_block, dev = fake_block_tree(tmp_path, {
        "vdc": superblock(b"ZOSCACHE", b"\x02" * 16),
        "vdb": superblock(b"ZOSCACHE", b"\x01" * 16),
        "vda": superblock(b"OTHER"),
        "vdd": bytes(4096),  # blank: no filesystem
        "loop0": superblock(b"ZOSCACHE"),  # never a loop device
    })
    found = cachedisk.filesystems(sys_block, dev)
    assert [f.device for f in found] == ["vda", "vdb", "vdc"]
    auto = choose("auto", found)
    assert auto is not None and auto.device == "vdb"
    by_label = choose("LABEL=OTHER", found)
    assert by_label is not None and by_label.device == "vda"
    by_uuid = choose("UUID=02020202-0202-0202-0202-020202020202", found)
    assert by_uuid is not None and by_uuid.device == "vdc"
    assert choose("LABEL=NOPE", found) is None
    assert choose("auto", [Filesystem("vda", "vda", "zoscache", "")]) is None  # exact label


def test_nothing_found_means_ram_without_touching_anything(tmp_path: Path) -> None:
    sys_block, dev = fake_block_tree(tmp_path, {"vda": superblock(b"DATA")})
    before = (dev / "vda").read_bytes()
    said: list[str] = []
    got = cachedisk.open_cache("auto", None, 1 << 30, said.append, wait_s=0,
                               mountpoint=tmp_path / "mnt", sys_block=sys_block, dev=dev)
    assert got == "no filesystem matches zos.cache=auto"
    assert (dev / "vda").read_bytes() == before and not (tmp_path / "mnt").exists()


def test_a_read_only_disk_is_not_mounted(tmp_path: Path) -> None:
    sys_block, dev = fake_block_tree(tmp_path, {"vda": superblock(b"ZOSCACHE")})
    (sys_block / "vda" / "ro").write_text("1\n")
    got = cachedisk.open_cache("auto", None, 1 << 30, print, wait_s=0,
                               mountpoint=tmp_path / "mnt", sys_block=sys_block, dev=dev)
    assert got == "vda is read-only" and not (tmp_path / "mnt").exists()


def blank(size: int = 4 * MIB) -> bytearray:
    return bytearray(size)


@pytest.mark.parametrize(("offset", "magic", "name"), [
    (510, b"\x55\xaa", "MBR"), (512, b"EFI PART", "GPT"), (1080, b"\x53\xef", "ext2/3/4"),
    (0, b"XFSB", "XFS"), (65600, b"_BHRfS_M", "btrfs"), (0, b"LUKS\xba\xbe", "LUKS"),
    (536, b"LVM2 001", "LVM"), (4086, b"SWAPSPACE2", "swap"), (32769, b"CD001", "ISO"),
])
def test_a_known_signature_refuses_the_format(offset: int, magic: bytes, name: str) -> None:
    disk = blank()
    disk[offset:offset + len(magic)] = magic
    found = signatures(bytes(disk[:MIB]), bytes(disk[-MIB:]))
    assert found and name in " ".join(found) and "data" not in found


def test_blank_is_blank_and_any_byte_is_data() -> None:
    disk = blank()
    assert signatures(bytes(disk[:MIB]), bytes(disk[-MIB:])) == []
    disk[123_456] = 1
    assert signatures(bytes(disk[:MIB]), bytes(disk[-MIB:])) == ["data"]
    disk = blank()
    disk[-1] = 7  # the last MiB counts too (md 1.0 and others live at the end)
    assert signatures(bytes(disk[:MIB]), bytes(disk[-MIB:])) == ["data"]
    disk = blank()
    disk[-512:-504] = b"EFI PART"  # a backup GPT header alone
    assert "a backup GPT" in signatures(bytes(disk[:MIB]), bytes(disk[-MIB:]))


def fake_mkfs(tmp_path: Path) -> Path:
    """An mkfs that records its argv and writes an ext4 magic where it was told."""
    log = tmp_path / "mkfs.log"
    script = tmp_path / "mkfs"
    script.write_text(f"#!{sys.executable}\nimport sys\n"
                      f"open({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
                      "f = open(sys.argv[-1], 'r+b'); f.seek(1080); f.write(b'\\x53\\xef')\n")
    script.chmod(0o755)
    return script


def test_format_only_a_blank_disk(tmp_path: Path) -> None:
    mkfs = fake_mkfs(tmp_path)
    said: list[str] = []
    used = tmp_path / "used.img"
    used.write_bytes(b"\0" * (MIB - 1) + b"x" + b"\0" * (3 * MIB))
    before = used.read_bytes()
    assert not cachedisk.format_blank(used, said.append, str(mkfs))
    assert used.read_bytes() == before and "it holds data" in said[-1]
    assert not (tmp_path / "mkfs.log").exists()
    empty = tmp_path / "blank.img"
    with open(empty, "wb") as f:
        f.truncate(4 * MIB)
    assert cachedisk.format_blank(empty, said.append, str(mkfs))
    assert (tmp_path / "mkfs.log").read_text().split() == [
        "-q", "-t", "ext4", "-L", "ZOSCACHE", "-m", "0", str(empty)]
    # Now it carries a filesystem: a second format is refused.
    assert not cachedisk.format_blank(empty, said.append, str(mkfs))
    assert "ext2/3/4" in said[-1]
    assert not cachedisk.format_blank(tmp_path / "absent", said.append, str(mkfs))
    assert not cachedisk.format_blank(empty.with_name("b2"), said.append, "/nonexistent")


def test_bound_is_at_most_nine_tenths_of_the_filesystem() -> None:
    assert cachedisk.bound(512 * MIB, 100 * MIB) == 90 * MIB
    assert cachedisk.bound(10 * MIB, 100 * MIB) == 10 * MIB
    assert cachedisk.bound(10 * MIB, 0) == 1


def test_hardware_report_roles_and_sizes(tmp_path: Path) -> None:
    sys_block = tmp_path / "block"
    for name, sectors, model in (("vda", 2048, ""), ("vdb", 4096, None),
                                 ("nvme0n1", 8, "Samsung SSD 980"), ("loop0", 8, "x")):
        d = sys_block / name
        (d / "device").mkdir(parents=True)
        (d / "size").write_text(f"{sectors}\n")
        if model:
            (d / "device" / "model").write_text(model + "   \n")
    (sys_block / "ram0").mkdir()  # no device: not a disk
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:        2048 kB\nMemFree: 1 kB\n")
    hw = cachedisk.hardware("vdb", sys_block, meminfo)
    assert hw.memory_bytes == 2048 * 1024 and hw.cpus == os.cpu_count()
    assert [(d.name, d.size_bytes, d.model, d.role) for d in hw.disks] == [
        ("nvme0n1", 8 * 512, "Samsung SSD 980", "untouched"),
        ("vda", 2048 * 512, "", "untouched"),
        ("vdb", 4096 * 512, "", "cache")]


class _Fetcher:
    def __init__(self, store: Path) -> None:
        self.store = store
        self.fetched: list[str] = []

    async def fetch_block(self, bid: str, *, max_size: int) -> bytes:
        self.fetched.append(bid)
        return (self.store / "blocks" / bid[:2] / bid).read_bytes()


def test_first_use_finds_altered_blocks_once_per_boot(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"f{i}").write_bytes(os.urandom(1_500_000 + i))
    data, _ = build_flist(src, tmp_path / "store")
    ids = sorted(decode_flist(data).blocks())
    assert len(ids) >= 3
    cache = BlockCache(tmp_path / "cache", 64 * MIB)
    fetcher = _Fetcher(tmp_path / "store")
    for bid in ids:
        cache.put(bid, (tmp_path / "store" / "blocks" / bid[:2] / bid).read_bytes())
    # An attacker rewrites one entry whole (its fast checksum matches the new bytes);
    # an accident flips a byte of another; a third is simply gone.
    (cache.path / ids[0][:2] / ids[0]).write_bytes(cache_entry(SEED, b"evil bytes"))
    damaged = cache.path / ids[1][:2] / ids[1]
    raw = bytearray(damaged.read_bytes())
    raw[-1] ^= 1
    damaged.write_bytes(bytes(raw))
    (cache.path / ids[2][:2] / ids[2]).unlink()

    said: list[str] = []
    first = FirstUse(None, BlockCache(cache.path, 64 * MIB), lambda: fetcher, said.append)  # type: ignore[arg-type, return-value]
    trio.run(first.vet, data)
    assert first.refetched == 2 and sorted(fetcher.fetched) == sorted(ids[:2])
    assert sum("altered on the disk" in line for line in said) == 2
    # Fetched again, they are good on the disk; a second vet this boot checks nothing.
    trio.run(first.vet, data)
    assert first.refetched == 2 and len(fetcher.fetched) == 2
    # The vet's own reads are not the readers' hits and misses.
    report = cachedisk.cache_report("disk", first.cache, "", first, None)
    assert (report.place, report.hits, report.misses, report.refetched) == ("disk", 0, 0, 2)
    assert report.used_bytes == cachedisk.used_bytes(cache.path) > 0
    for bid in ids:  # a reader: the altered ones are back, the missing one is not
        assert (first.cache.get(bid) is None) == (bid == ids[2])
    children = CacheCounts(hits=5, misses=1, fetches=1, corrupt=0, write_errors=2, discarded=1)
    report = cachedisk.cache_report("disk", first.cache, "", first, lambda: children)
    assert (report.hits, report.misses, report.refetched) == (len(ids) - 1 + 5, 1 + 1, 3)
    assert report.note == "2 blocks not kept (write errors)"


@pytest.mark.skipif(not Path("/sbin/mke2fs").exists(), reason="needs mke2fs (e2fsprogs)")
def test_format_with_the_real_mke2fs(tmp_path: Path) -> None:
    # The agent runs mke2fs with an empty environment and no stdin, as in the
    # initramfs (which has no mke2fs.conf; tests/boot/test_cache_disk_format.py).
    said: list[str] = []
    empty = tmp_path / "blank.img"
    with open(empty, "wb") as f:
        f.truncate(16 * MIB)
    assert cachedisk.format_blank(empty, said.append), said
    assert said[-1] == f"cache: formatted {empty} as ext4 ZOSCACHE"
    with open(empty, "rb") as f:
        f.seek(1024 + 0x78)
        assert f.read(16).rstrip(b"\0") == b"ZOSCACHE"
