"""Secure Boot in QEMU with OVMF's Secure Boot build and our keys enrolled.

The signed UKI boots to `zosnode: ready` from the EFI image and by UEFI
netboot (OVMF PXE -> db-signed iPXE -> the UKI through the firmware's
loader, which first refuses a stranger's image), with the farm's settings
only in the unsigned zosnode.cred beside it, and the hub lists the node with
secure boot on. The same image with one initramfs byte changed, signed by a
stranger, or unsigned is refused by the firmware before any of it runs.
Secure Boot off and BIOS boot and say so.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from examples import demo_os
from tests.boot.conftest import TOP, BootFiles
from tests.lab import ovmf, qemu
from tests.lab.bootlab import BOOT, HUB, TAP, BootLab, boot_lab
from zosnode.bootmedia import uki
from zosnode.bootmedia.secureboot import KeySet

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("root_lab")]
READY = r"zosnode: ready (\d+) ([0-9a-f]{64})"
BOOT_S = 240  # QEMU start to ready under emulation on shared cores
UKI_CFG = uki.UkiConfig(extra_args=("quiet",))


@pytest.fixture(scope="module")
def kit(boot_files: BootFiles, tmp_path_factory: pytest.TempPathFactory) -> ovmf.SecureBootKit:
    return ovmf.make_kit(tmp_path_factory.mktemp("sb"), boot_files.kernel,
                         boot_files.initramfs, UKI_CFG)


def _bootstrap(*argv: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "zosnode", "bootstrap", *argv],
                          capture_output=True, text=True, timeout=300, cwd=TOP)
    assert proc.returncode == 0, proc.stderr


def _efi_image(out: Path, image: Path) -> Path:
    _bootstrap("efi", "--uki", str(image), "--farm", "lab", "--channel", demo_os.CHANNEL,
               "--hub", HUB, "-o", str(out))
    return out


def _resigned(kit: ovmf.SecureBootKit, keys: KeySet, out: Path) -> Path:
    uki.sign(kit.uki_unsigned, out, keys.key("db"), keys.cert("db"))
    return out


def _tampered(signed: Path, out: Path) -> Path:
    data = bytearray(signed.read_bytes())
    off, size = uki.section_bytes(bytes(data), ".initrd")
    data[off + size // 2] ^= 0x01
    out.write_bytes(data)
    return out


def test_changed_stranger_or_unsigned_uki_refused_iso_boots_sb_off_and_bios_unverified(
        kit: ovmf.SecureBootKit, boot_files: BootFiles, tmp_path: Path) -> None:
    bad = [_efi_image(tmp_path / f"{name}.img", image) for name, image in (
        ("changed", _tampered(kit.uki, tmp_path / "changed.efi")),
        ("stranger", _resigned(kit, kit.stranger, tmp_path / "stranger.efi")),
        ("unsigned", kit.uki_unsigned))]
    console = tmp_path / "refused.log"
    argv = (qemu.base_argv(console) + ovmf.firmware_argv(kit.vars_copy(tmp_path / "v1.fd"))
            + ovmf.disk_argv(*bad))
    with qemu.vm(argv, console) as vm:
        start = 0
        for _ in bad:  # one refusal per disk, in boot order
            m, refused_s = vm.wait_for(ovmf.REFUSED, 120, start=start)
            start = m.end()
        text = vm.text()
    assert text.count("Access Denied") == 3, text[-3000:]
    assert "zosnode:" not in text and "Linux version" not in text  # nothing of it ran
    print(f"three images refused {refused_s:.1f} s after QEMU start")

    # The hybrid ISO's UEFI path: the signed UKI from its El Torito EFI image, the
    # farm's settings from the zosnode.cred beside it.
    iso = tmp_path / "uki.iso"
    _bootstrap("iso", "--uki", str(kit.uki), "--farm", "lab", "--channel", demo_os.CHANNEL,
               "--hub", HUB, "-o", str(iso))
    console = tmp_path / "iso.log"
    argv = (qemu.base_argv(console) + ovmf.firmware_argv(kit.vars_copy(tmp_path / "v2.fd"))
            + ["-cdrom", str(iso), "-boot", "d"])
    with qemu.vm(argv, console) as vm:
        vm.wait_for(rf"zosnode: config: farm lab channel {demo_os.CHANNEL} hubs {HUB}", BOOT_S)
        vm.wait_for(r"zosnode: secure boot: on", 60)
    # Secure Boot off: the same signed image boots, and the node says unverified.
    console = tmp_path / "sb-off.log"
    argv = (qemu.base_argv(console)
            + ovmf.firmware_argv(kit.vars_copy(tmp_path / "v3.fd", secure_boot=False))
            + ovmf.disk_argv(_efi_image(tmp_path / "good.img", kit.uki)))
    with qemu.vm(argv, console) as vm:
        vm.wait_for(rf"zosnode: config: farm lab channel {demo_os.CHANNEL} hubs {HUB}", BOOT_S)
        vm.wait_for(r"zosnode: secure boot: off", 60)
    # BIOS (SeaBIOS, kernel and initramfs as today): no EFI at all.
    console = tmp_path / "bios.log"
    argv = qemu.base_argv(console) + qemu.direct_boot_argv(
        boot_files.kernel, boot_files.initramfs,
        "console=ttyS0 quiet panic=-1 ZOSNODE_RUNTIME_DIR=/lib/zosnode -- node run")
    with qemu.vm(argv, console) as vm:
        vm.wait_for(r"zosnode: secure boot: bios", BOOT_S)


def _listed(lab: BootLab, node_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while True:
        for n in lab.hub_json("/api/v1/nodes")["nodes"]:
            if n["node_id"] == node_id:
                return dict(n)
        assert time.monotonic() < deadline, f"the hub never listed {node_id}"
        time.sleep(0.5)


def test_signed_uki_boots_to_ready_from_efi_image_and_by_netboot(
        kit: ovmf.SecureBootKit, demo_kit: demo_os.Kit, tmp_path: Path) -> None:
    www = tmp_path / "lab" / "www" / "boot" / demo_os.CHANNEL
    www.mkdir(parents=True)
    # The netboot first gets a UKI signed by a stranger: iPXE's chain is refused by
    # the firmware's loader and the script starts over; then the good one is there.
    (www / "zosnode.efi").symlink_to(_resigned(kit, kit.stranger, tmp_path / "stranger.efi"))
    image = _efi_image(tmp_path / "esp.img", kit.uki)
    with boot_lab(tmp_path / "lab", "lab", demo_os.CHANNEL, "--hub", HUB, "--boot-url", BOOT,
                  "--uki", "--efi-loader", str(kit.ipxe)) as lab:
        lab.start_hub(demo_kit.publisher_id)
        lab.push(demo_kit.publisher_key, demo_kit.store, demo_kit.manifest(1),
                 root=demo_kit.root)
        timings = {}
        for medium, media_argv in (
                ("EFI image", ovmf.disk_argv(image)),
                ("UEFI netboot", ["-boot", "n"])):
            console = tmp_path / f"{medium.replace(' ', '-')}.log"
            argv = (qemu.base_argv(console, memory_mb=1024) + ovmf.nic_argv(TAP)
                    + ovmf.firmware_argv(kit.vars_copy(tmp_path / "vars.fd")) + media_argv)
            with qemu.vm(qemu.nsexec_argv(lab.ns, argv), console, deadline_s=420) as vm:
                if medium == "UEFI netboot":
                    tried, _ = vm.wait_for(r"\(signed image\)", BOOT_S)
                    again, _ = vm.wait_for(r"zosnode: no hub answered", 120, start=tried.end())
                    refusal = vm.text()[tried.end():again.start()]
                    assert "Linux version" not in refusal and "zosnode: mounted" not in refusal
                    (www / "zosnode.efi").unlink()
                    (www / "zosnode.efi").symlink_to(kit.uki)
                    print(f"iPXE on the stranger's image: {' '.join(refusal.split())[:200]}")
                # Farm, channel and hub came from zosnode.cred: the signed line has none.
                vm.wait_for(rf"zosnode: config: farm lab channel {demo_os.CHANNEL} hubs {HUB}",
                            BOOT_S)
                vm.wait_for(r"zosnode: secure boot: on", 60)
                ready, timings[medium] = vm.wait_for(READY, BOOT_S)
                assert _listed(lab, ready.group(2))["secure_boot"] == "on"
                text = vm.text()
            if medium == "UEFI netboot":
                assert "(signed image)" in text  # the script took the UKI branch
    http_log = (tmp_path / "lab" / "http.log").read_text()
    assert f"GET /boot/{demo_os.CHANNEL}/zosnode.efi" in http_log
    assert "vmlinuz" not in http_log
    print("QEMU start to ready: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
