"""Sourceless, reproducible bytecode for the initramfs's standard library and the artifact.

Docstrings are left out of the bytecode (as `-OO` would, but asserts and
`__debug__` stay): about 13% of the stdlib's compressed bytecode, and nothing
a node runs reads `__doc__` without allowing for None (the standard library
and the vendored packages support `-OO`; ours never reads it). Line numbers
are kept, so tracebacks still name the right line.
"""

from __future__ import annotations

import ast
import importlib.util
import marshal
import sys

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


def sourceless_pyc(source: bytes, filename: str) -> bytes:
    """An unchecked-hash pyc without docstrings: no mtime inside, and the
    importer never looks for the source. SyntaxError if `source` is not Python."""
    tree = without_docstrings(ast.parse(source, filename))
    code = compile(tree, filename, "exec", dont_inherit=True, optimize=0)
    flags = 0b01  # hash-based, check_source off
    return (importlib.util.MAGIC_NUMBER + flags.to_bytes(4, "little")
            + importlib.util.source_hash(source) + marshal.dumps(code))
