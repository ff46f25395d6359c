"""`zos.cache.format=/dev/X` makes the cache on a blank disk, and on no other.

Two direct kernel boots with `zos.cache=auto`, no TPM, two virtio disks: vda
holds data (a few random bytes at its start), vdb is blank (all zeros).
Boot 1 names vdb: the node formats it with the initramfs's own mke2fs, uses
it (the heartbeat says `disk`) and leaves vda alone. Boot 2 names vda: the
node refuses (it holds data), vda is byte for byte what it was, and the
ZOSCACHE made on vdb by boot 1 gives the node the same id again.
"""

from __future__ import annotations

import os
import shutil
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from examples import demo_os
from tests.boot.conftest import BootFiles
from tests.boot.test_cache_disk import BOOT_S, IDENTITY, MIB, READY, cmdline, heartbeat_of, sha256
from tests.lab import qemu
from tests.lab.bootlab import HUB, TAP, BootLab, boot_lab

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("root_lab"),
              pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="needs mkfs.ext4")]

EXT4_MAGIC = 0xEF53


def ext4_label(image: Path) -> str | None:
    """The volume label of the ext2/3/4 superblock at 1024, or None if there is none."""
    with open(image, "rb") as f:
        f.seek(1024)
        sb = f.read(1024)
    if struct.unpack_from("<H", sb, 0x38)[0] != EXT4_MAGIC:
        return None
    return sb[0x78:0x88].rstrip(b"\0").decode()


def test_format_makes_the_cache_on_a_blank_disk_and_refuses_one_with_data(
        tmp_path: Path, demo_kit: demo_os.Kit, boot_files: BootFiles) -> None:
    kit = demo_kit
    data = tmp_path / "data.img"
    with open(data, "wb") as f:
        f.truncate(32 * MIB)
        f.seek(4096)
        f.write(os.urandom(512))  # no known signature: refused as "data"
    blank = tmp_path / "blank.img"
    with open(blank, "wb") as f:
        f.truncate(64 * MIB)
    data_sum = sha256(data)
    times: dict[str, float] = {}

    def boot(lab: BootLab, name: str, device: str) -> tuple[str, str, str, dict[str, Any]]:
        """Boot to ready; the id, its source, the console and the hub's record of the
        node from its first heartbeat (taken while the VM runs: it follows ready)."""
        started = time.time()
        console = tmp_path / f"console-{name}.log"
        append = cmdline("zos.cache=auto", f"zos.cache.format={device}")
        argv = (qemu.base_argv(console, memory_mb=1024) + qemu.tap_nic_argv(TAP)
                + qemu.disk_argv(data, blank)
                + qemu.direct_boot_argv(boot_files.kernel, boot_files.initramfs, append))
        with qemu.vm(qemu.nsexec_argv(lab.ns, argv), console, deadline_s=300) as vm:
            ident, _ = vm.wait_for(IDENTITY, BOOT_S)
            ready, times[name] = vm.wait_for(READY, BOOT_S, start=ident.end())
            assert ready.group(2) == ident.group(1)
            hb = heartbeat_of(lab, ident.group(1), started)
            return ident.group(1), ident.group(2), vm.text(), hb

    with boot_lab(tmp_path / "lab", "lab", demo_os.CHANNEL, "--hub", HUB) as lab:
        lab.start_hub(kit.publisher_id)
        lab.push(kit.publisher_key, kit.store, kit.manifest(1), root=kit.root)

        first, source, text, hb = boot(lab, "format", "/dev/vdb")
        assert "cache: formatted /dev/vdb as ext4 ZOSCACHE" in text, text[-3000:]
        assert source.startswith("disk"), source
        assert hb["identity_source"] == "disk"
        roles = {d["name"]: d["role"] for d in hb["hardware"]["disks"]}
        assert roles == {"vda": "untouched", "vdb": "cache"}, roles

        second, source, text, hb = boot(lab, "refuse", "/dev/vda")
        assert "cache: not formatting /dev/vda: it holds data" in text, text[-3000:]
        assert second == first and source.startswith("disk")
        assert hb["identity_source"] == "disk"
    assert ext4_label(blank) == "ZOSCACHE"
    assert ext4_label(data) is None and sha256(data) == data_sum
    print("QEMU start to ready: formatting vdb {format:.1f} s, refusing vda {refuse:.1f} s"
          .format(**times))
