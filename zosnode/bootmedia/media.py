"""Build the loader media: a hybrid ISO (BIOS and UEFI), a USB image, an EFI image.

BIOS: isolinux starts Debian's ipxe.lkrn with the farm's script as its
initrd; iPXE runs a script handed to it that way. UEFI: a FAT image holding
a standalone GRUB (grub-mkstandalone) with the embedded configuration from
`grub.py`. The ISO carries both and an isohybrid MBR/GPT, so the same bytes
written to a USB stick boot too: the USB image is that hybrid image.

Given a signed unified kernel image (`uki.py`), the UEFI path has no GRUB at
all: the image is `EFI/BOOT/BOOTX64.EFI` itself, so the firmware checks its
signature under Secure Boot, and the farm's settings are
`loader/credentials/zosnode.cred` beside it (the stub packs them into the
initramfs). GRUB could only chainload a signed image through shim.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from zosnode.atomicfile import write_atomic
from zosnode.bootmedia.errors import BuildInputError
from zosnode.bootmedia.grub import MODULES, render_grub
from zosnode.bootmedia.ipxe import SETTINGS_NAME, BootConfig, render_ipxe, render_settings
from zosnode.bootmedia.tools import run as run_tool

# Where Debian's boot loader packages put their files.
IPXE_LKRN = Path("/usr/lib/ipxe/ipxe.lkrn")  # package ipxe
ISOLINUX_BIN = Path("/usr/lib/ISOLINUX/isolinux.bin")  # package isolinux
ISOHYBRID_MBR = Path("/usr/lib/ISOLINUX/isohdpfx.bin")
LDLINUX_C32 = Path("/usr/lib/syslinux/modules/bios/ldlinux.c32")  # package syslinux-common
GRUB_EFI_DIR = Path("/usr/lib/grub/x86_64-efi")  # package grub-efi-amd64-bin
EFI_SLACK_KIB = 192

ISOLINUX_CFG = """\
DEFAULT zosnode
PROMPT 0
TIMEOUT 0
LABEL zosnode
  KERNEL /ipxe.lkrn
  INITRD /boot.ipxe
"""


@dataclass(frozen=True)
class Tools:
    ipxe_lkrn: Path = IPXE_LKRN
    isolinux_bin: Path = ISOLINUX_BIN
    isohybrid_mbr: Path = ISOHYBRID_MBR
    ldlinux_c32: Path = LDLINUX_C32
    grub_efi_dir: Path = GRUB_EFI_DIR

    def check(self, efi: bool) -> None:
        needed = [(self.ipxe_lkrn, "ipxe"), (self.isolinux_bin, "isolinux"),
                  (self.isohybrid_mbr, "isolinux"), (self.ldlinux_c32, "syslinux-common")]
        if efi:
            needed.append((self.grub_efi_dir / "http.mod", "grub-efi-amd64-bin"))
        for path, package in needed:
            if not path.exists():
                raise BuildInputError(f"{path} is missing: install the Debian package {package}")
        tools = ["xorriso"] + (["grub-mkstandalone", "mformat", "mcopy"] if efi else [])
        for tool in tools:
            if shutil.which(tool) is None:
                raise BuildInputError(f"the {tool} command is missing (xorriso, grub-common, "
                                      "mtools packages)")




def _place(built: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, built.read_bytes())


def _uki_efi_image(cfg: BootConfig, uki: Path, out: Path) -> None:
    if not uki.is_file():
        raise BuildInputError(f"{uki} is missing: the signed UKI (zosnode bootstrap uki)")
    for tool in ("mformat", "mmd", "mcopy"):
        if shutil.which(tool) is None:
            raise BuildInputError(f"the {tool} command is missing (mtools package)")
    with tempfile.TemporaryDirectory(prefix="zosnode-efi-") as tmp:
        t = Path(tmp)
        (t / SETTINGS_NAME).write_text(render_settings(cfg))
        img = t / "efi.img"
        kib = (uki.stat().st_size // 1024 + EFI_SLACK_KIB * 4 + 1023) // 1024 * 1024
        with open(img, "wb") as f:
            f.truncate(kib * 1024)
        run_tool(["mformat", "-i", str(img), "-N", "5a4f5331", "::"])
        # The stub's global credentials directory: unlike `<image>.extra.d` it does not
        # depend on the image's device path, which OVMF gives no usable file path
        # for on the ISO's El Torito partition.
        creds = "::/loader/credentials"
        run_tool(["mmd", "-i", str(img), "::/EFI", "::/EFI/BOOT", "::/loader", creds])
        run_tool(["mcopy", "-i", str(img), str(t / SETTINGS_NAME), f"{creds}/{SETTINGS_NAME}"])
        run_tool(["mcopy", "-i", str(img), str(uki), "::/EFI/BOOT/BOOTX64.EFI"])
        _place(img, out)


def build_efi_image(cfg: BootConfig, out: Path, tools: Tools = Tools(),
                    uki: Path | None = None) -> None:
    """A FAT image with EFI/BOOT/BOOTX64.EFI: GRUB with the farm's configuration inside,
    or the signed UKI `uki` with the farm's settings beside it."""
    if uki is not None:
        _uki_efi_image(cfg, uki, out)
        return
    tools.check(efi=True)
    with tempfile.TemporaryDirectory(prefix="zosnode-efi-") as tmp:
        t = Path(tmp)
        (t / "grub.cfg").write_text(render_grub(cfg))
        grub = t / "BOOTX64.EFI"
        run_tool(["grub-mkstandalone", "-O", "x86_64-efi", "-d", str(tools.grub_efi_dir),
              "--install-modules=" + " ".join(MODULES), "--modules=" + " ".join(MODULES),
              "--locales=", "--fonts=", "--themes=", "-o", str(grub),
              f"boot/grub/grub.cfg={t / 'grub.cfg'}"])
        img = t / "efi.img"
        # FAT overhead plus slack, in whole 64 KiB steps: the medium stays small.
        kib = (grub.stat().st_size // 1024 + EFI_SLACK_KIB + 63) // 64 * 64
        with open(img, "wb") as f:
            f.truncate(kib * 1024)
        run_tool(["mformat", "-i", str(img), "-N", "5a4f5331", "::"])
        run_tool(["mmd", "-i", str(img), "::/EFI", "::/EFI/BOOT"])
        run_tool(["mcopy", "-i", str(img), str(grub), "::/EFI/BOOT/BOOTX64.EFI"])
        _place(img, out)


def build_iso(cfg: BootConfig, out: Path, tools: Tools = Tools(), efi: bool = True,
              uki: Path | None = None) -> None:
    """The hybrid ISO: BIOS (isolinux + iPXE) and, unless efi=False, UEFI (GRUB, or the
    signed UKI `uki` when given)."""
    tools.check(efi=efi and uki is None)
    with tempfile.TemporaryDirectory(prefix="zosnode-iso-") as tmp:
        root = Path(tmp) / "root"
        (root / "isolinux").mkdir(parents=True)
        shutil.copyfile(tools.isolinux_bin, root / "isolinux/isolinux.bin")
        shutil.copyfile(tools.ldlinux_c32, root / "isolinux/ldlinux.c32")
        (root / "isolinux/isolinux.cfg").write_text(ISOLINUX_CFG)
        shutil.copyfile(tools.ipxe_lkrn, root / "ipxe.lkrn")
        (root / "boot.ipxe").write_text(render_ipxe(cfg))
        argv = ["xorriso", "-as", "mkisofs", "-quiet", "-o", str(Path(tmp) / "out.iso"),
                "-V", "ZOSNODE", "-J", "-R",
                "-isohybrid-mbr", str(tools.isohybrid_mbr),
                # No 1 MiB cylinder rounding: keeps the BIOS medium under 1 MB.
                "-partition_cyl_align", "off",
                "-c", "isolinux/boot.cat", "-b", "isolinux/isolinux.bin",
                "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table"]
        if efi:
            build_efi_image(cfg, root / "efi.img", tools, uki=uki)
            argv += ["-eltorito-alt-boot", "-e", "efi.img", "-no-emul-boot",
                     "-isohybrid-gpt-basdat"]
        run_tool(argv + [str(root)])
        _place(Path(tmp) / "out.iso", out)
