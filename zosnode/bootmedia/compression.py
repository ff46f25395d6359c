"""initramfs compression: the formats the kernel unpacks, each reproducible.

gzip and xz come from the standard library; zstd from the `zstd` command
(the standard library has none in 3.11). Chosen by bench/boot_compression.py.
"""

from __future__ import annotations

import gzip
import lzma
import subprocess

from zosnode.bootmedia.errors import BuildInputError

METHODS = ("gzip", "xz", "zstd", "none")
# bench/boot_compression.py: with the artifact stored raw in the cpio, zstd -19
# is 20% smaller than gzip -9 and the kernel unpacks both in the same time.
DEFAULT = "zstd"
# Level 19 with zstd's default 8 MB window. A 64 MB window (--ultra -22
# --long=26), which holds the whole cpio, is 0.9% smaller but the kernel
# unpacks it in 2.87 s instead of 0.78 s under emulation (bench/boot.md).
ZSTD_ARGS = ("-19",)
_TIMEOUT_S = 300


def compress(data: bytes, method: str) -> bytes:
    if method == "none":
        return data
    if method == "gzip":
        return gzip.compress(data, compresslevel=9, mtime=0)
    if method == "xz":
        # The kernel's xz decoder checks CRC32 only.
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)
    if method == "zstd":
        return zstd(data, ZSTD_ARGS)
    raise BuildInputError(f"compression {method!r} is not one of {', '.join(METHODS)}")


def zstd(data: bytes, args: tuple[str, ...]) -> bytes:
    """`data` through the zstd command with `args`."""
    try:
        proc = subprocess.run(["zstd", *args, "-q", "-c", "--no-progress"], input=data,
                              capture_output=True, timeout=_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildInputError(f"zstd compression needs the zstd command: {exc}") from exc
    if proc.returncode != 0:
        raise BuildInputError(f"zstd failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def decompress(data: bytes) -> bytes:
    """Undo `compress`, recognising the format by its magic."""
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if data[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(data)
    if data[:4] == b"\x28\xb5\x2f\xfd":
        proc = subprocess.run(["zstd", "-d", "-q", "-c", "--long=31"], input=data,
                              capture_output=True, timeout=_TIMEOUT_S)
        if proc.returncode != 0:
            raise BuildInputError("zstd could not decompress the initramfs")
        return proc.stdout
    return data
