"""Collect a minimal CPython runtime from unpacked Debian packages.

Takes the interpreter, the standard library modules the artifact loads
(closure.py; never tests, GUIs, installers, other language front ends)
compiled to sourceless pycs, the extension modules whose libraries the pinned set
provides, the few `PROGRAMS` the agent runs, and the shared libraries reached
from the interpreter, those programs and the artifact's native modules by
DT_NEEDED. Nothing else.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from zosnode.bootmedia import closure, elf
from zosnode.bootmedia.cpio import Entry, Kind, Tree
from zosnode.bootmedia.errors import BuildInputError
from zosnode.bootmedia.pyc import check_compiler, sourceless_pyc

PYTHON = "usr/bin/python3.11"
STDLIB = "usr/lib/python3.11"
LIB_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu")
LOADER = "lib64/ld-linux-x86-64.so.2"
# The only programs besides the interpreter, each with the libraries it needs:
# mke2fs formats a blank disk named by `zos.cache.format=` (agent/cachedisk.py).
# Never a shell or an interpreter (initramfs.forbidden_members).
PROGRAMS = ("sbin/mke2fs",)

# Top-level stdlib names a node never imports. Interpreters, shells and
# installers are excluded on principle; the rest to stay small (the
# profile's closure leaves out what no node path imports besides).
EXCLUDED = frozenset({
    "test", "idlelib", "tkinter", "turtledemo", "turtle", "lib2to3", "ensurepip", "venv",
    "distutils", "pydoc_data", "pydoc", "curses", "dbm", "site-packages",
    "dist-packages", "sitecustomize", "__phello__", "msilib", "doctest", "pdb", "idle",
    "code", "codeop", "pty", "tty", "cgi", "cgitb", "crypt", "nntplib", "imaplib",
    "poplib", "smtplib", "smtpd", "telnetlib", "ftplib", "mailbox", "mailcap", "sndhdr",
    "imghdr", "aifc", "sunau", "wave", "chunk", "audioop", "ossaudiodev", "nis", "spwd",
    "xdrlib", "pipes", "tabnanny", "trace", "cProfile", "profile", "pstats", "timeit",
    "webbrowser", "antigravity", "this", "zipapp", "py_compile", "compileall",
    "wsgiref", "xmlrpc", "rlcompleter", "readline",
    "_pydecimal", "_pyio", "pickletools", "bdb", "cmd", "_osx_support", "_aix_support",
    "_bootsubprocess", "__hello__",
})
EXCLUDED_PREFIXES = ("config-3.11", "_test", "_xx", "xxlimited", "_ctypes_test", "_curses",
                     "_tkinter", "_dbm", "_gdbm", "_crypt", "_lsprof")


@dataclass(frozen=True)
class RuntimeReport:
    files: int
    libraries: tuple[str, ...]
    skipped_extensions: tuple[str, ...]  # lib-dynload modules whose libraries are absent


def _excluded(rel: str) -> bool:
    top = rel.split("/", 1)[0]
    if top == "lib-dynload":
        top = posixpath.basename(rel).split(".", 1)[0]
    stem = top[:-3] if top.endswith(".py") else top
    return stem in EXCLUDED or stem.startswith(EXCLUDED_PREFIXES)


class _Libraries:
    """Resolves DT_NEEDED names inside the unpacked root, copying what they reach."""

    def __init__(self, root: Path, tree: Tree) -> None:
        self.root = root
        self.tree = tree
        self.added: set[str] = set()

    def find(self, name: str) -> str | None:
        for d in LIB_DIRS:
            if os.path.lexists(self.root / d / name):
                return f"{d}/{name}"
        return None

    def missing(self, data: bytes) -> list[str]:
        """Names this ELF needs, transitively, that the root cannot provide."""
        out: list[str] = []
        seen: set[str] = set()
        stack = list(elf.needed(data))
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            rel = self.find(name)
            if rel is None:
                out.append(name)
                continue
            stack.extend(elf.needed((self.root / rel).resolve().read_bytes()))
        return out

    def add_needed(self, data: bytes) -> None:
        for name in elf.needed(data):
            if name in self.added:
                continue
            rel = self.find(name)
            if rel is None:
                raise BuildInputError(f"shared library {name} is in no pinned package")
            self.added.add(name)
            real = self._add_path(rel)
            self.add_needed(real)

    def _add_path(self, rel: str) -> bytes:
        """Add `rel` (following symlinks inside the root); return the file's bytes."""
        path = self.root / rel
        if path.is_symlink():
            target = os.readlink(path)
            self.tree.add(Entry(rel, Kind.SYMLINK, 0o777, target=target))
            dest = (posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
                    if not target.startswith("/") else target.lstrip("/"))
            return self._add_path(dest)
        data = path.read_bytes()
        self.tree.add(Entry(rel, Kind.FILE, 0o755, data=data))
        return data


def collect(root: Path, tree: Tree, natives: Iterable[bytes],
            roots: Iterable[str] | None = None, zipapp: bytes | None = None) -> RuntimeReport:
    """Add the runtime under `root` (unpacked runtime packages) to `tree`.

    `natives` are the artifact's native extension files: their libraries are
    added too, so that the artifact's own imports work at boot. `roots` are
    the module names the artifact imports: given, only the stdlib modules that
    importing them and every module of `zipapp` loads are taken (closure.py);
    else all but `EXCLUDED`.
    """
    check_compiler()
    if not (root / PYTHON).is_file():
        raise BuildInputError(f"{PYTHON} is not in the runtime packages")
    libs = _Libraries(root, tree)
    python = (root / PYTHON).read_bytes()
    tree.add(Entry(PYTHON, Kind.FILE, 0o755, data=python))
    libs.add_needed(python)
    libs._add_path(LOADER)
    for data in natives:
        libs.add_needed(data)
    for program in PROGRAMS:
        if not (root / program).is_file():
            raise BuildInputError(f"{program} is not in the runtime packages")
        data = (root / program).read_bytes()
        tree.add(Entry(program, Kind.FILE, 0o755, data=data))
        libs.add_needed(data)

    skipped: list[str] = []
    count = 0
    base = root / STDLIB
    keep: frozenset[str] | None = None
    if roots is not None:
        index = closure.stdlib_index(base)
        # An excluded module is not in the image, so what importing it would
        # load is not needed for it (`trace` alone brought sysconfig).
        roots = {r for r in roots if not _excluded(r.split(".", 1)[0])}
        try:
            mods = closure.traced(roots, root, PYTHON, LOADER, LIB_DIRS, index, zipapp)
        except closure.TraceError as exc:
            raise BuildInputError(str(exc)) from exc
        keep = frozenset(index[n] for n in mods)
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            rel = full.relative_to(base).as_posix()
            if _excluded(rel) or full.is_symlink() or "__pycache__" in rel:
                continue
            if keep is not None and rel not in keep:
                continue
            if name.endswith(".py"):
                src = full.read_bytes()
                pyc = sourceless_pyc(src, f"/{STDLIB}/{rel}")
                tree.add(Entry(f"{STDLIB}/{rel[:-3]}.pyc", Kind.FILE, 0o644, data=pyc))
                count += 1
            elif name.endswith(".so"):
                data = full.read_bytes()
                if libs.missing(data):
                    skipped.append(name.split(".", 1)[0])
                    continue
                tree.add(Entry(f"{STDLIB}/{rel}", Kind.FILE, 0o755, data=data))
                libs.add_needed(data)
                count += 1
    return RuntimeReport(files=count, libraries=tuple(sorted(libs.added)),
                         skipped_extensions=tuple(sorted(skipped)))
