"""Just enough ELF to list a shared object's DT_NEEDED libraries.

The runtime collector follows these to copy only the libraries that the
interpreter and the artifact's native modules load. ELF64 little-endian only
(x86_64, the one target). Pure code over bytes.
"""

from __future__ import annotations

import struct

from zosnode.bootmedia.errors import FormatError

_PT_LOAD = 1
_PT_DYNAMIC = 2
_DT_NULL = 0
_DT_NEEDED = 1
_DT_STRTAB = 5


def is_elf(data: bytes) -> bool:
    return data[:4] == b"\x7fELF"


def _check_header(data: bytes) -> None:
    if not is_elf(data):
        raise FormatError("not an ELF file")
    if len(data) < 64:
        raise FormatError("ELF header truncated")
    if data[4] != 2 or data[5] != 1:
        raise FormatError("only ELF64 little-endian is supported")


def needed(data: bytes) -> tuple[str, ...]:
    """The DT_NEEDED names of an ELF64 LE file, in order; () for a static file."""
    _check_header(data)
    try:
        phoff, = struct.unpack_from("<Q", data, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
        loads: list[tuple[int, int, int]] = []  # vaddr, offset, filesz
        dynamic: tuple[int, int] | None = None
        for i in range(phnum):
            p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(
                "<IIQQQQ", data, phoff + i * phentsize)
            if p_type == _PT_LOAD:
                loads.append((p_vaddr, p_offset, p_filesz))
            elif p_type == _PT_DYNAMIC:
                dynamic = (p_offset, p_filesz)
        if dynamic is None:
            return ()
        strtab_vaddr = None
        offsets: list[int] = []
        off, size = dynamic
        for pos in range(off, off + size - 15, 16):
            tag, val = struct.unpack_from("<qQ", data, pos)
            if tag == _DT_NULL:
                break
            if tag == _DT_NEEDED:
                offsets.append(val)
            elif tag == _DT_STRTAB:
                strtab_vaddr = val
    except (struct.error, OverflowError) as exc:
        # OverflowError: an offset of 2**63 or more does not even fit a C ssize_t.
        raise FormatError(f"ELF headers run past the end: {exc}") from exc
    if not offsets:
        return ()
    if strtab_vaddr is None:
        raise FormatError("ELF has DT_NEEDED but no DT_STRTAB")
    strtab = _file_offset(loads, strtab_vaddr)
    names = []
    for rel in offsets:
        start = strtab + rel
        end = data.find(b"\0", start)
        if start >= len(data) or end < 0:
            raise FormatError("ELF DT_NEEDED name runs past the end")
        names.append(data[start:end].decode("ascii", "replace"))
    return tuple(names)


def _file_offset(loads: list[tuple[int, int, int]], vaddr: int) -> int:
    for seg_vaddr, seg_off, seg_size in loads:
        if seg_vaddr <= vaddr < seg_vaddr + seg_size:
            return seg_off + (vaddr - seg_vaddr)
    raise FormatError(f"ELF address {vaddr:#x} is in no loaded segment")


def section(data: bytes, wanted: str) -> bytes | None:
    """The bytes of the named section of an ELF64 LE file, or None if absent."""
    _check_header(data)
    try:
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
        headers = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
                   for i in range(shnum)]
        names_off = headers[shstrndx][4]
    except (struct.error, OverflowError, IndexError) as exc:
        raise FormatError(f"ELF section headers are malformed: {exc}") from exc
    for sh_name, _type, _flags, _addr, sh_offset, sh_size in headers:
        start = names_off + sh_name
        end = data.find(b"\0", start)
        if end < 0:
            raise FormatError("ELF section name runs past the end")
        if data[start:end] == wanted.encode():
            if sh_offset + sh_size > len(data):
                raise FormatError(f"ELF section {wanted} runs past the end")
            return data[sh_offset:sh_offset + sh_size]
    return None
