"""Sourceless, reproducible bytecode for the initramfs's standard library and the artifact.

Docstrings are left out of the bytecode (as `-OO` would, but asserts and
`__debug__` stay): about 13% of the stdlib's compressed bytecode, and nothing
a node runs reads `__doc__` without allowing for None (the standard library
and the vendored packages support `-OO`; ours never reads it). Column
positions are left out too, as `-X no_debug_ranges` would: they are 31% of
the compressed bytecode, and only a traceback's `^^^` carets read them. Line
numbers are kept, so tracebacks still name the right line.
"""

from __future__ import annotations

import ast
import importlib.util
import marshal
import sys
import types

from zosnode.bootmedia.errors import BuildInputError

TARGET = (3, 11)
_HAS_DOCSTRING = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def check_compiler() -> None:
    if sys.version_info[:2] != TARGET:
        raise BuildInputError(
            f"the initramfs runs CPython {TARGET[0]}.{TARGET[1]}; build it with that version "
            f"(this is {sys.version_info[0]}.{sys.version_info[1]})")


def without_docstrings(tree: ast.Module) -> ast.Module:
    """`tree` with the docstring of the module and of each class and function
    removed (a body left empty gets a `pass` on the docstring's line). All of
    them or none: code that extends a docstring from its base class's
    (email._policybase) allows for both being None, as under -OO, not for
    one. The cost: `@dataclass` builds a missing docstring with
    `inspect.signature` at class creation (importing the node's modules makes
    94 such calls instead of 53)."""
    for node in ast.walk(tree):
        if not isinstance(node, _HAS_DOCSTRING) or not node.body:
            continue
        first = node.body[0]
        if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)):
            node.body[0:1] = [] if len(node.body) > 1 else [ast.copy_location(ast.Pass(), first)]
    return tree


def _varint(table: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = table[i]
        i += 1
        value |= (byte & 63) << shift
        shift += 6
        if not byte & 64:
            return value, i


def _lines_only(table: bytes) -> bytes:
    """A 3.11 location table (CPython's Objects/locations.md) with every entry
    rewritten to the no-column form, code 13, keeping its length and line
    delta: the table `compile` writes under `-X no_debug_ranges`."""
    out = bytearray()
    i = 0
    while i < len(table):
        first = table[i]
        form = (first >> 3) & 15
        i += 1
        if form == 15:  # no location
            out.append(first)
            continue
        if form < 10:  # short form: same line, one byte of columns
            delta, i = 0, i + 1
        elif form < 13:  # one-line form: the line delta in the code, two column bytes
            delta, i = form - 10, i + 2
        else:  # no-column or long form: a signed varint delta first
            zigzag, i = _varint(table, i)
            delta = -(zigzag >> 1) if zigzag & 1 else zigzag >> 1
            for _ in range(3 if form == 14 else 0):  # end line, start and end column
                i = _varint(table, i)[1]
        out.append(0x80 | 13 << 3 | first & 7)
        zigzag = -delta << 1 | 1 if delta < 0 else delta << 1
        while zigzag >= 64:
            out.append(64 | zigzag & 63)
            zigzag >>= 6
        out.append(zigzag)
    return bytes(out)


def without_columns(code: types.CodeType) -> types.CodeType:
    consts = tuple(without_columns(c) if isinstance(c, types.CodeType) else c
                   for c in code.co_consts)
    return code.replace(co_linetable=_lines_only(code.co_linetable), co_consts=consts)


def sourceless_pyc(source: bytes, filename: str) -> bytes:
    """An unchecked-hash pyc without docstrings or columns: no mtime inside,
    and the importer never looks for the source. SyntaxError if `source` is
    not Python."""
    tree = without_docstrings(ast.parse(source, filename))
    code = without_columns(compile(tree, filename, "exec", dont_inherit=True, optimize=0))
    flags = 0b01  # hash-based, check_source off
    return (importlib.util.MAGIC_NUMBER + flags.to_bytes(4, "little")
            + importlib.util.source_hash(source) + marshal.dumps(code))
