"""OVMF with Secure Boot for the boot tests and the UKI benchmark.

A farm key set (PK, KEK, db) enrolled into a copy of Debian's empty variable
store (virt-fw-vars), the Secure Boot firmware build with SMM (so a guest
cannot rewrite the variables), and the signed images: the UKI from a boot
test's kernel and initramfs and a db-signed copy of Debian's ipxe.efi. Each VM
gets its own copy of the variable store (the firmware writes to it).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from zosnode.bootmedia import secureboot, uki

CODE_SB = Path("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd")  # package ovmf
VARS_TEMPLATE = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
IPXE_EFI = Path("/usr/lib/ipxe/ipxe.efi")  # package ipxe; not signed by anyone
# What OVMF prints when its image verification refuses a boot option.
REFUSED = r"failed to load Boot\d+ [^\n]*: Access Denied"


def require() -> None:
    for path, package in ((CODE_SB, "ovmf"), (VARS_TEMPLATE, "ovmf"),
                          (uki.STUB, "systemd-boot-efi"), (IPXE_EFI, "ipxe")):
        if not path.exists():
            pytest.skip(f"needs {path} (Debian package {package})")
    for tool in ("objcopy", "sbsign", "openssl", "mcopy"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (binutils, sbsigntool, openssl, mtools)")
    try:
        secureboot.virt_fw_vars()
    except Exception as exc:  # noqa: BLE001 - a skip names what is missing
        pytest.skip(str(exc))


@dataclass(frozen=True)
class SecureBootKit:
    keys: secureboot.KeySet
    stranger: secureboot.KeySet
    vars_on: Path  # our keys, Secure Boot on
    vars_off: Path  # our keys, Secure Boot off
    uki_unsigned: Path
    uki: Path  # signed with our db key
    ipxe: Path  # Debian's ipxe.efi signed with our db key

    def vars_copy(self, dest: Path, secure_boot: bool = True) -> Path:
        shutil.copyfile(self.vars_on if secure_boot else self.vars_off, dest)
        return dest


def make_kit(work: Path, kernel: Path, initramfs: Path,
             cfg: uki.UkiConfig) -> SecureBootKit:
    require()
    work.mkdir(parents=True, exist_ok=True)
    keys = secureboot.make_keys(work / "keys")
    stranger = secureboot.make_keys(work / "stranger", "stranger")
    vars_on, vars_off = work / "vars-sb-on.fd", work / "vars-sb-off.fd"
    secureboot.enrol_ovmf(keys, VARS_TEMPLATE, vars_on)
    secureboot.enrol_ovmf(keys, VARS_TEMPLATE, vars_off, secure_boot=False)
    unsigned, signed, ipxe = work / "unsigned.efi", work / "zosnode.efi", work / "ipxe.efi"
    uki.build_uki(kernel, initramfs, unsigned, cfg)
    uki.sign(unsigned, signed, keys.key("db"), keys.cert("db"))
    uki.sign(IPXE_EFI, ipxe, keys.key("db"), keys.cert("db"))
    return SecureBootKit(keys, stranger, vars_on, vars_off, unsigned, signed, ipxe)


def firmware_argv(vars_file: Path) -> list[str]:
    """q35 with SMM, the Secure Boot code read-only, this VM's variable store."""
    return ["-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on",
            "-drive", f"if=pflash,format=raw,unit=0,file={CODE_SB},readonly=on",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_file}"]


def nic_argv(tap: str, mac: str = "52:54:00:12:34:56") -> list[str]:
    # No option ROM: QEMU's iPXE ROM is unsigned and would be refused under Secure
    # Boot anyway; OVMF's own virtio-net driver does the PXE boot.
    return ["-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=n0,mac={mac},romfile="]


def disk_argv(*images: Path) -> list[str]:
    out: list[str] = []
    for image in images:
        out += ["-drive", f"file={image},format=raw,if=ide"]
    return out
