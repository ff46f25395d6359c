"""A cache disk that is read-only, full or gone never fails a boot: the node goes on in RAM.

Three direct kernel boots with `zos.cache=auto` and no TPM (see
test_cache_disk.py for the lab): the ZOSCACHE disk attached read-only
(QEMU readonly=on: the node says so, keeps its key and blocks in RAM, and
the image is byte for byte what it was), a tiny ZOSCACHE filesystem filled
to the last 128 KiB (cache writes fail; the node reaches ready all the
same), and no disk at all (the heartbeat says `ram`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

import pytest

from examples import demo_os
from tests.boot.conftest import BootFiles
from tests.boot.test_cache_disk import (
    BOOT_S,
    IDENTITY,
    MIB,
    READY,
    cmdline,
    heartbeat_of,
    make_ext4,
    mounted,
    sha256,
)
from tests.lab import qemu
from tests.lab.bootlab import HUB, TAP, BootLab, boot_lab

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("root_lab"),
              pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="needs mkfs.ext4")]


def fill(image: Path, where: Path, leave: int = 128 * 1024) -> None:
    """Fill the filesystem in `image` to ENOSPC (as root: the reserve too), then free `leave`."""
    with mounted(image, where) as mnt:
        chunk = os.urandom(64 * 1024)
        n = 0
        with contextlib.suppress(OSError):
            while True:
                (mnt / f"junk{n}").write_bytes(chunk)
                n += 1
        for i in range(leave // len(chunk)):
            (mnt / f"junk{i}").unlink()


def test_read_only_full_or_missing_cache_disk_still_reaches_ready(
        tmp_path: Path, demo_kit: demo_os.Kit, boot_files: BootFiles) -> None:
    kit = demo_kit
    ro = make_ext4(tmp_path / "ro.img", 32 * MIB)
    ro_sum = sha256(ro)
    tiny = make_ext4(tmp_path / "tiny.img", 4 * MIB)
    fill(tiny, tmp_path / "mnt")
    append = cmdline("zos.cache=auto")
    times: dict[str, float] = {}

    def boot(lab: BootLab, name: str, *disks: Path | tuple[Path, str]) -> tuple[str, str, str]:
        console = tmp_path / f"console-{name}.log"
        argv = (qemu.base_argv(console, memory_mb=1024) + qemu.tap_nic_argv(TAP)
                + qemu.disk_argv(*disks)
                + qemu.direct_boot_argv(boot_files.kernel, boot_files.initramfs, append))
        with qemu.vm(qemu.nsexec_argv(lab.ns, argv), console, deadline_s=300) as vm:
            ident, _ = vm.wait_for(IDENTITY, BOOT_S)
            ready, times[name] = vm.wait_for(READY, BOOT_S, start=ident.end())
            assert ready.group(2) == ident.group(1)
            heartbeat_of(lab, ident.group(1), started)  # it reports, too
            return ident.group(1), ident.group(2), vm.text()

    with boot_lab(tmp_path / "lab", "lab", demo_os.CHANNEL, "--hub", HUB) as lab:
        lab.start_hub(kit.publisher_id)
        lab.push(kit.publisher_key, kit.store, kit.manifest(1), root=kit.root)

        started = time.time()
        node, source, text = boot(lab, "ro", (ro, "ro"))
        assert "cache: vda is read-only; blocks are kept in RAM" in text, text[-3000:]
        assert source.startswith("ram")
        hb = heartbeat_of(lab, node, started)
        assert hb["identity_source"] == "ram" and hb["cache"]["place"] == "ram"
        assert hb["cache"]["note"] == "vda is read-only"
        assert [d["role"] for d in hb["hardware"]["disks"]] == ["untouched"]

        started = time.time()
        node, source, text = boot(lab, "full", tiny)
        hb = heartbeat_of(lab, node, started)
        # The probe fits (or not: then RAM); block writes fail for want of space.
        assert hb["cache"]["used_bytes"] <= 4 * MIB

        started = time.time()
        node, source, text = boot(lab, "none")
        assert source.startswith("ram") and "no filesystem matches zos.cache=auto" in text
        hb = heartbeat_of(lab, node, started)
        assert hb["identity_source"] == "ram" and hb["hardware"]["disks"] == []
    assert sha256(ro) == ro_sum
    print("QEMU start to ready: cache read-only {ro:.1f} s, full {full:.1f} s, "
          "none {none:.1f} s".format(**times))
