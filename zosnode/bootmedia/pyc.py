"""Sourceless, reproducible bytecode for the initramfs's standard library."""

from __future__ import annotations

import importlib.util
import marshal
import sys

from zosnode.bootmedia.errors import BuildInputError

TARGET = (3, 11)


def check_compiler() -> None:
    if sys.version_info[:2] != TARGET:
        raise BuildInputError(
            f"the initramfs runs CPython {TARGET[0]}.{TARGET[1]}; build it with that version "
            f"(this is {sys.version_info[0]}.{sys.version_info[1]})")


def sourceless_pyc(source: bytes, filename: str) -> bytes:
    """An unchecked-hash pyc: no mtime inside, and the importer never looks for the source."""
    code = compile(source, filename, "exec", dont_inherit=True, optimize=0)
    flags = 0b01  # hash-based, check_source off
    return (importlib.util.MAGIC_NUMBER + flags.to_bytes(4, "little")
            + importlib.util.source_hash(source) + marshal.dumps(code))
