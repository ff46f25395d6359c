"""Fuzz targets `cpio`, `elf`, `kmod`: the boot-media readers.

`cpio` reads initramfs archives back (`zosnode initramfs list`); `elf` and
`kmod` read the Debian runtime's libraries and the kernel's modules while an
initramfs is built. Property: the layer's `FormatError` or a result; an
accepted cpio archive's entries encode into an archive that reads back the
same. Seeds are small ELF files built here (a DT_NEEDED list, a .modinfo
section) so that mutations reach the tables behind the header.
"""

from __future__ import annotations

import struct

from hypothesis import strategies as st

from tests.fuzz.budget import Target, fuzz, replay
from tests.fuzz.mutate import havoc
from zosnode.bootmedia import cpio, elf, kmod
from zosnode.bootmedia.errors import FormatError


def check_cpio(data: bytes) -> None:
    try:
        entries = cpio.decode(data)
    except FormatError:
        return
    if len({e.path for e in entries}) == len(entries):  # encode refuses duplicates
        again = cpio.decode(cpio.encode(entries))
        assert again == tuple(sorted(entries, key=lambda e: e.path))


def check_elf(data: bytes) -> None:
    try:
        names = elf.needed(data)
        assert all(isinstance(n, str) for n in names)
    except FormatError:
        pass
    try:
        found = elf.section(data, ".modinfo")
        assert found is None or isinstance(found, bytes)
    except FormatError:
        pass


def check_kmod(data: bytes) -> None:
    try:
        mod = kmod.read_module("kernel/fs/x.ko", data)
    except FormatError:
        return
    assert all(isinstance(a, str) for a in mod.aliases + mod.depends)


CPIO = Target("cpio", check_cpio)
ELF = Target("elf", check_elf)
KMOD = Target("kmod", check_kmod)


def elf_file(needed: tuple[bytes, ...] = (), modinfo: bytes | None = None) -> bytes:
    """A minimal ELF64 LE: one PT_LOAD over the file, PT_DYNAMIC, sections."""
    strtab = b"\0" + b"".join(n + b"\0" for n in needed)
    shstr = b"\0.shstrtab\0.modinfo\0.dynstr\0"
    dyn = b"".join(struct.pack("<qQ", 1, 1 + sum(len(n) + 1 for n in needed[:i]))
                   for i in range(len(needed)))
    ph_off, ph_num = 64, 2
    dyn_off = ph_off + 56 * ph_num
    dyn += struct.pack("<qQ", 5, 0)  # DT_STRTAB, patched below
    dyn += struct.pack("<qQ", 0, 0)
    str_off = dyn_off + len(dyn)
    info = modinfo or b""
    info_off = str_off + len(strtab)
    shstr_off = info_off + len(info)
    sh_off = shstr_off + len(shstr)
    dyn = dyn[:-32] + struct.pack("<qQ", 5, str_off) + dyn[-16:]
    sections = [(0, 0, 0, 0), (1, 3, shstr_off, len(shstr)), (27, 3, str_off, len(strtab))]
    if modinfo is not None:
        sections.append((11, 1, info_off, len(info)))
    total = sh_off + 64 * len(sections)
    head = b"\x7fELF\x02\x01\x01" + b"\0" * 9 + struct.pack(
        "<HHIQQQIHHHHHH", 3, 62, 1, 0, ph_off, sh_off, 0, 64, 56, ph_num, 64,
        len(sections), 1)
    phdrs = struct.pack("<IIQQQQQQ", 1, 5, 0, 0, 0, total, total, 0x1000)
    phdrs += struct.pack("<IIQQQQQQ", 2, 6, dyn_off, dyn_off, dyn_off, len(dyn), len(dyn), 8)
    shdrs = b"".join(struct.pack("<IIQQQQIIQQ", name, typ, 0, 0, off, size, 0, 0, 1, 0)
                     for name, typ, off, size in sections)
    out = head + phdrs + dyn + strtab + info + shstr + shdrs
    assert len(out) == total
    return out


ELF_SEEDS = [
    elf_file((b"libc.so.6", b"libm.so.6")),
    elf_file(),
    elf_file((b"libz.so.1",), modinfo=b"license=GPL\0depends=fuse,virtio-ring\0alias=fs-x\0"),
]
KMOD_SEEDS = [
    elf_file(modinfo=b"license=GPL\0depends=fuse,virtio-ring\0alias=fs-x\0alias=char-major\0"),
    elf_file(modinfo=b"depends=\0vermagic=6.1.0 SMP\0"),
]
CPIO_SEEDS = [
    cpio.encode([
        cpio.Entry("init", cpio.Kind.FILE, 0o755, data=b"#!/bin/python\n" * 5),
        cpio.Entry("dev", cpio.Kind.DIR, 0o755),
        cpio.Entry("dev/console", cpio.Kind.CHAR, 0o600, rdev=(5, 1)),
        cpio.Entry("lib", cpio.Kind.SYMLINK, 0o777, target="usr/lib"),
        cpio.Entry("usr/lib/x", cpio.Kind.BLOCK, 0o600, rdev=(8, 0)),
    ], mtime=1_700_000_000) + b"\0" * 512,
    cpio.encode([cpio.Entry("a", cpio.Kind.FILE, data=b"x")]),
]

test_cpio_regressions = replay(CPIO)
test_cpio_havoc = fuzz(CPIO, havoc(CPIO_SEEDS))
test_elf_regressions = replay(ELF)
test_elf_havoc = fuzz(ELF, havoc(ELF_SEEDS, max_ops=3))
test_elf_raw = fuzz(ELF, st.binary(min_size=64, max_size=300).map(
    lambda b: b"\x7fELF\x02\x01" + b[6:]))
test_kmod_regressions = replay(KMOD)
test_kmod_havoc = fuzz(KMOD, havoc(KMOD_SEEDS, max_ops=3))


def test_seeds_parse() -> None:
    assert elf.needed(ELF_SEEDS[0]) == ("libc.so.6", "libm.so.6")
    assert elf.needed(ELF_SEEDS[1]) == ()
    mod = kmod.read_module("kernel/fs/x.ko", KMOD_SEEDS[0])
    assert mod.depends == ("fuse", "virtio_ring") and mod.aliases == ("fs-x", "char-major")
    assert len(cpio.decode(CPIO_SEEDS[0])) == 5
