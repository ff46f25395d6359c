"""One mechanism for each job: whole-or-nothing writes go through `zosnode.atomicfile`.

Every module under zosnode/ is parsed (the AST, not the text) for what a
write-then-rename written by hand needs: a rename (`os.rename`, `os.replace`,
`os.renames`, `shutil.move`, `Path.rename`, `Path.replace`, or any of them
imported by name) or a temporary file (`tempfile.mkstemp`, `mktemp`,
`NamedTemporaryFile`). Scratch directories (`TemporaryDirectory`, `mkdtemp`)
are fine on their own: putting one in place would need a rename.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import zosnode

PACKAGE = Path(zosnode.__file__).resolve().parent
THE_MECHANISM = "atomicfile.py"

# (module path under zosnode/, function) -> why it may rename or make a temp file.
# Keep it empty unless a site truly cannot use atomicfile; an entry that is no
# longer needed fails the test.
ALLOWED: dict[tuple[str, str], str] = {}

_RENAMES = {("os", "rename"), ("os", "replace"), ("os", "renames"), ("shutil", "move")}
_TEMP_FILES = {("tempfile", "mkstemp"), ("tempfile", "mktemp"),
               ("tempfile", "NamedTemporaryFile")}
_FORBIDDEN = _RENAMES | _TEMP_FILES


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


class _Finder(ast.NodeVisitor):
    def __init__(self) -> None:
        self.found: list[tuple[str, int, str]] = []  # (function, line, what)
        self._where: list[str] = []
        # Local names bound to a forbidden function or module: `from os import replace`,
        # `import tempfile as tf`.
        self._aliases: dict[str, tuple[str, str]] = {}
        self._modules: dict[str, str] = {}

    def _add(self, node: ast.AST, what: str) -> None:
        self.found.append((".".join(self._where) or "<module>", getattr(node, "lineno", 0), what))

    def _scoped(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self._where.append(node.name)
        self.generic_visit(node)
        self._where.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scoped

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._modules[alias.asname or alias.name] = alias.name

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if (node.module, alias.name) in _FORBIDDEN and node.module is not None:
                self._aliases[alias.asname or alias.name] = (node.module, alias.name)
                self._add(node, f"from {node.module} import {alias.name}")

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        head, _, rest = (_dotted(func) or "").partition(".")
        module = self._modules.get(head, head)
        if (module, rest) in _FORBIDDEN:
            self._add(node, f"{module}.{rest}()")
        elif head and not rest and head in self._aliases:
            self._add(node, "{}.{}()".format(*self._aliases[head]))
        elif isinstance(func, ast.Attribute) and (
            # Path.rename(target); Path.replace(target) takes one argument, where
            # str/bytes.replace take two and dataclasses.replace takes keywords.
            func.attr == "rename"
            or (func.attr == "replace" and len(node.args) == 1 and not node.keywords)
        ):
            self._add(node, f".{func.attr}()")
        self.generic_visit(node)


def scan(source: str) -> list[tuple[str, int, str]]:
    finder = _Finder()
    finder.visit(ast.parse(source))
    return finder.found


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p != PACKAGE / THE_MECHANISM)


def test_no_module_writes_whole_files_by_hand() -> None:
    found = []
    seen_allowed = set()
    for path in _modules():
        rel = path.relative_to(PACKAGE).as_posix()
        for function, line, what in scan(path.read_text()):
            if (rel, function) in ALLOWED:
                seen_allowed.add((rel, function))
                continue
            found.append(f"zosnode/{rel}:{line} in {function}: {what}")
    assert not found, (
        "write whole files or trees with zosnode.atomicfile (write_atomic, open_atomic, "
        "new_tree, remove_tree), or extend it:\n  " + "\n  ".join(found))
    stale = set(ALLOWED) - seen_allowed
    assert not stale, f"allow-list entries no longer needed: {sorted(stale)}"


@pytest.mark.parametrize("source", [
    "import os\ndef f(a, b):\n    os.replace(a, b)\n",
    "import os\nos.rename('a', 'b')\n",
    "import os as o\no.renames('a', 'b')\n",
    "from os import replace\nreplace('a', 'b')\n",
    "from os import rename as mv\n",
    "import shutil\nshutil.move('a', 'b')\n",
    "from pathlib import Path\nPath('a').rename('b')\n",
    "def f(tmp, path):\n    tmp.replace(path)\n",
    "def f(self, p):\n    self.tmp.rename(p)\n",
    "import tempfile\nfd, name = tempfile.mkstemp()\n",
    "import tempfile as t\nt.NamedTemporaryFile(delete=False)\n",
    "from tempfile import mkstemp\n",
])
def test_the_scan_finds_hand_written_renames(source: str) -> None:
    assert scan(source), source


@pytest.mark.parametrize("source", [
    "s = 'a-b'.replace('-', '_')\n",
    "import dataclasses\ndef f(c):\n    return dataclasses.replace(c, x=1)\n",
    "from dataclasses import replace\ndef f(c):\n    return replace(c, x=1)\n",
    "import tempfile\nwith tempfile.TemporaryDirectory() as d:\n    pass\n",
    "import tempfile\nd = tempfile.mkdtemp()\n",
    "import os\nos.link('a', 'b')\n",
])
def test_the_scan_leaves_other_uses_alone(source: str) -> None:
    assert scan(source) == [], source


def test_the_scan_names_the_function() -> None:
    source = "import os\nclass C:\n    def put(self):\n        os.replace('a', 'b')\n"
    assert scan(source) == [("C.put", 4, "os.replace()")]  # once, not also as .replace()
