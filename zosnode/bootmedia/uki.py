"""The unified kernel image: kernel, initramfs and fixed command line in one signed EFI binary.

The systemd EFI stub (Debian's `systemd-boot-efi`) gets `.osrel`, `.cmdline`,
`.uname`, `.initrd` and `.linux` PE sections (added by `objcopy`, the way
systemd's own tooling does it), so one Authenticode signature over the file
covers all of them: under Secure Boot the firmware refuses the image when any
byte of any section differs. The stub then ignores a command line handed over
by the loader (it has one of its own), which is why the farm's settings come
in another way (`settings_text`, docs/boot-trust.md).

Reproducible: the same inputs give the same bytes before signing. objcopy
stamps the PE header with the current time, so the time stamp is set to 0
afterwards and the PE checksum recomputed. Signing (`sbsign`) adds a PKCS#7
signature with its own signing time: the signed file differs per signing,
what it signs does not.

The command line is the same for every farm: console, panic, the native-module
directory, `--` and /init's arguments. Farm, channel and hubs are not in it.
"""

from __future__ import annotations

import re
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from zosnode import __version__
from zosnode.atomicfile import write_atomic
from zosnode.bootmedia import tools
from zosnode.bootmedia.errors import BuildInputError, FormatError
from zosnode.bootmedia.ipxe import NATIVE_DIR

STUB = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")  # package systemd-boot-efi
_ARG = re.compile(r"[A-Za-z0-9._,:=/@+-]+")
_UNAME = re.compile(r"[A-Za-z0-9._+-]{1,64}")
_PAGE = 0x1000
# ukify's order: .linux last (the kernel may use memory past its section's end).
SECTIONS = (".osrel", ".cmdline", ".uname", ".initrd", ".linux")


@dataclass(frozen=True)
class UkiConfig:
    """What is signed besides kernel and initramfs: the command line every farm shares."""

    console: tuple[str, ...] = ("tty0", "ttyS0,115200")
    extra_args: tuple[str, ...] = ()
    init_args: tuple[str, ...] = ("node", "run")
    init_env: tuple[str, ...] = (f"ZOSNODE_RUNTIME_DIR={NATIVE_DIR}",)
    uname: str = ""  # the kernel release, for `.uname`; "" leaves the section out

    def __post_init__(self) -> None:
        for arg in (*self.console, *self.extra_args, *self.init_args, *self.init_env):
            if not _ARG.fullmatch(arg):
                raise BuildInputError(f"kernel argument {arg!r}: use letters, digits and ._,:=/@+-")
        for arg in self.extra_args:
            if arg.startswith("zos."):
                # The signed part is the same for every farm: zos.* keys go in the settings.
                raise BuildInputError(f"{arg!r}: zos.* settings are per farm, not in the UKI")
        if self.uname and not _UNAME.fullmatch(self.uname):
            raise BuildInputError(f"kernel release {self.uname!r} is not a plain version")


def cmdline(cfg: UkiConfig) -> str:
    parts = [f"console={c}" for c in cfg.console]
    parts += ["panic=10", *cfg.init_env, *cfg.extra_args]
    if cfg.init_args:
        parts += ["--", *cfg.init_args]
    return " ".join(parts)


def os_release() -> str:
    return (f"NAME=zosnode\nID=zosnode\nVERSION_ID={__version__}\n"
            f"PRETTY_NAME=\"zosnode {__version__}\"\n")


# -- PE headers (the little this module reads and writes) -----------------------------


@dataclass(frozen=True)
class PeLayout:
    image_base: int
    section_alignment: int
    end_rva: int  # first address after the last section, in the image
    timestamp_offset: int
    checksum_offset: int
    sections: tuple[str, ...]


def pe_layout(data: bytes) -> PeLayout:
    """Read a PE32+ image's headers; FormatError on anything else."""
    if len(data) < 0x40 or data[:2] != b"MZ":
        raise FormatError("not a PE image (no MZ header)")
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    if pe + 24 > len(data) or data[pe:pe + 4] != b"PE\0\0":
        raise FormatError("not a PE image (no PE signature)")
    _machine, count, _ts, _sym, _nsym, opt_size, _ch = struct.unpack_from("<HHIIIHH", data, pe + 4)
    opt = pe + 24
    magic = struct.unpack_from("<H", data, opt)[0] if opt + 2 <= len(data) else 0
    if opt + opt_size > len(data) or opt_size < 68 or magic != 0x20B:
        raise FormatError("not a PE32+ image")
    base = struct.unpack_from("<Q", data, opt + 24)[0]
    align = struct.unpack_from("<I", data, opt + 32)[0]
    table = opt + opt_size
    if table + 40 * count > len(data):
        raise FormatError("PE section table runs past the end of the file")
    end, names = 0, []
    for i in range(count):
        name, vsize, rva = struct.unpack_from("<8sII", data, table + 40 * i)
        names.append(name.rstrip(b"\0").decode("ascii", "replace"))
        end = max(end, rva + vsize)
    return PeLayout(base, align, end, pe + 8, opt + 64, tuple(names))


def pe_checksum(data: bytes | bytearray, checksum_offset: int) -> int:
    """The PE header checksum: 16-bit one's-complement sum (the field as 0) plus the length."""
    buf = bytearray(data)
    buf[checksum_offset:checksum_offset + 4] = bytes(4)
    if len(buf) % 2:
        buf.append(0)
    total = sum(memoryview(buf).cast("H"))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (total + len(data)) & 0xFFFFFFFF


def normalise(data: bytes) -> bytes:
    """Time stamp 0 and the checksum that goes with it: what makes two builds equal."""
    lay = pe_layout(data)
    buf = bytearray(data)
    struct.pack_into("<I", buf, lay.timestamp_offset, 0)
    struct.pack_into("<I", buf, lay.checksum_offset, pe_checksum(buf, lay.checksum_offset))
    return bytes(buf)


def section_addresses(stub: PeLayout, sizes: dict[str, int]) -> dict[str, int]:
    """Each new section's virtual address (image base included), page aligned, after the stub's."""
    align = max(_PAGE, stub.section_alignment)
    out: dict[str, int] = {}
    at = stub.end_rva
    for name in SECTIONS:
        if name in sizes:
            at = (at + align - 1) // align * align
            out[name] = stub.image_base + at
            at += sizes[name]
    return out


# -- building and signing -----------------------------------------------------------






def build_uki(kernel: Path, initramfs: Path, out: Path, cfg: UkiConfig = UkiConfig(),
              stub: Path = STUB) -> None:
    """Write the unsigned UKI to `out`: byte-identical for the same inputs."""
    tools.need("objcopy", "binutils")
    for path, what in ((stub, "the systemd EFI stub (package systemd-boot-efi)"),
                       (kernel, "the kernel"), (initramfs, "the initramfs")):
        if not path.is_file():
            raise BuildInputError(f"{path} is missing: {what}")
    stub_layout = pe_layout(stub.read_bytes())
    clash = set(SECTIONS) & set(stub_layout.sections)
    if clash:
        raise BuildInputError(f"{stub} already has {', '.join(sorted(clash))}: not a bare stub")
    with tempfile.TemporaryDirectory(prefix="zosnode-uki-") as tmp:
        t = Path(tmp)
        files = {".osrel": t / "osrel", ".cmdline": t / "cmdline",
                 ".initrd": initramfs, ".linux": kernel}
        (t / "osrel").write_text(os_release())
        (t / "cmdline").write_text(cmdline(cfg))
        if cfg.uname:
            (t / "uname").write_text(cfg.uname)
            files[".uname"] = t / "uname"
        sizes = {name: path.stat().st_size for name, path in files.items()}
        argv = ["objcopy"]
        for name, vma in section_addresses(stub_layout, sizes).items():
            argv += ["--add-section", f"{name}={files[name]}",
                     "--change-section-vma", f"{name}={vma:#x}"]
        built = t / "uki.efi"
        tools.run([*argv, str(stub), str(built)])
        built.write_bytes(normalise(built.read_bytes()))
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, built.read_bytes())


def sign(unsigned: Path, out: Path, key: Path, cert: Path) -> None:
    """Authenticode-sign an EFI binary (UKI, iPXE) with a db key: `sbsign`."""
    tools.need("sbsign", "sbsigntool")
    for path in (unsigned, key, cert):
        if not path.is_file():
            raise BuildInputError(f"{path} is missing")
    with tempfile.TemporaryDirectory(prefix="zosnode-sign-") as tmp:
        signed = Path(tmp) / "signed.efi"
        tools.run(["sbsign", "--key", str(key), "--cert", str(cert), "--output", str(signed),
              str(unsigned)])
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, signed.read_bytes())


def verify(image: Path, cert: Path) -> bool:
    """True when `image` carries a valid signature by `cert` (sbverify)."""
    tools.need("sbverify", "sbsigntool")
    proc = subprocess.run(["sbverify", "--cert", str(cert), str(image)], capture_output=True,
                          text=True, timeout=tools.TIMEOUT_S)
    return proc.returncode == 0


def section_bytes(data: bytes, name: str) -> tuple[int, int]:
    """(file offset, size) of a section's raw data: what a tamper test flips."""
    lay = pe_layout(data)
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    opt_size = struct.unpack_from("<H", data, pe + 20)[0]
    table = pe + 24 + opt_size
    for i in range(len(lay.sections)):
        if lay.sections[i] == name:
            raw_size, raw_ptr = struct.unpack_from("<II", data, table + 40 * i + 16)
            return raw_ptr, raw_size
    raise FormatError(f"no {name} section")
