"""Which standard-library modules the initramfs needs: the artifact's import closure.

Computed at build time in two steps. The roots, statically: every import
statement in every Python file of the node profile, at any depth (in
functions, in `try` blocks), plus the names its native extensions import
from C (string constants in the ELF file, `native_names`). Then, by running:
the pinned runtime's own interpreter imports each root that is a stdlib
module and every module of the profile (`traced`), and every module that
loads is kept, plus `ALWAYS` and the codecs in `ENCODINGS`, less what the
interpreter has frozen into its own image (but `LANDMARK`).

The tracer runs the import-time code of every module of the artifact on the
build machine (isolated: -I, an empty environment but PATH and LANG, a
temporary working directory); the artifact is the one just built and
audited, so that is code the builder already trusts.

What this leaves out: a stdlib module that another stdlib module imports
only inside a function the node calls, and that no module-level import
reaches. Following those statically as well takes 442 of 588 modules (most
of the stdlib), so they are not followed; the ones the node needs are in
`ALWAYS`, and the VM boot tests (FUSE mounts, TLS hub, upgrade, rollback)
are what proves the list complete.
"""

from __future__ import annotations

import ast
import json
import os
import posixpath
import re
import subprocess
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from io import BytesIO
from pathlib import Path

# Imported by name from C or under a computed name, so no import statement
# shows them: the interpreter's start-up (encodings, site), codec lookups by
# name (every encodings.* module), time.strptime (_strptime), pickling
# (copyreg), and the traceback printer.
ALWAYS = frozenset({
    "encodings", "site", "_sitebuiltins", "os", "stat", "posixpath", "genericpath",
    "_collections_abc", "io", "abc", "codecs", "warnings", "_strptime", "copyreg",
    "_compat_pickle", "linecache", "tokenize", "traceback", "_weakrefset", "types",
})
# Imported under a computed name by one module only: kept only with it.
# sysconfig's platform data (54 KB of .pyc) is read by sysconfig alone (no
# import in the interpreter's own frozen start-up, site or getpath); the
# node's closure has no sysconfig since `trace` went (runtime.EXCLUDED).
IMPORTED_BY = {
    "_sysconfigdata__x86_64-linux-gnu": "sysconfig",
    "_sysconfigdata__linux_x86_64-linux-gnu": "sysconfig",
}
# The codecs a node can look up by name, of the 122 `encodings` holds: the
# interpreter's own (UTF-8 mode, ASCII, Latin-1 and their aliases), JSON's
# detection (UTF-16/32), zipfile's name decoding (cp437, for members without
# the UTF-8 flag: the artifact's, importlib.metadata's), host names
# (idna, punycode), the escapes, and the bytes-to-bytes codecs the stdlib
# names (hex, base64). No node path names another (docs/boot.md); one looked
# up anyway fails with LookupError ("unknown encoding"), as an unknown name
# does everywhere. Regional code pages, Mac, CJK and Windows-only codecs stay out.
ENCODINGS = frozenset({
    "encodings", "encodings.aliases", "encodings.utf_8", "encodings.utf_8_sig",
    "encodings.ascii", "encodings.latin_1", "encodings.utf_16", "encodings.utf_16_le",
    "encodings.utf_16_be", "encodings.utf_32", "encodings.utf_32_le", "encodings.utf_32_be",
    "encodings.cp437", "encodings.idna", "encodings.punycode", "encodings.raw_unicode_escape",
    "encodings.unicode_escape", "encodings.charmap", "encodings.hex_codec",
    "encodings.base64_codec",
})
# The interpreter finds its standard library by this module's file
# (getpath's landmark, os.py or os.pyc): kept even though it is frozen.
LANDMARK = "os"
NATIVE_PREFIX = "_native/"  # as in zosnode/artifact/record.py (not imported: build side)
_NAME = re.compile(rb"[A-Za-z_][A-Za-z0-9_.\-]{1,80}")
_TAIL = re.compile(rb"([A-Za-z0-9_.\-]{2,80})\0")  # the name characters ending a C string
_NAME_START = re.compile(r"[A-Za-z_]")
_RUST = b"/rustc/"  # the standard library's source paths in its panic messages


def stdlib_index(base: Path) -> dict[str, str]:
    """Module name -> path relative to `base`, for .py files and extension modules."""
    index: dict[str, str] = {}
    for path in sorted(base.rglob("*")):
        if path.is_dir() or path.is_symlink() or "__pycache__" in path.parts:
            continue
        rel = path.relative_to(base).as_posix()
        if rel.startswith("lib-dynload/") and rel.endswith(".so"):
            index[posixpath.basename(rel).split(".", 1)[0]] = rel
        elif rel.endswith(".py") and _importable(rel):
            parts = rel[:-3].split("/")
            if parts[-1] == "__init__":
                parts = parts[:-1]
            index[".".join(parts)] = rel
    return index


def _importable(rel: str) -> bool:
    return not rel.startswith(("site-packages/", "dist-packages/", "config-3", "lib-dynload/"))


def imports_of(source: bytes, module: str, is_package: bool) -> Iterator[str]:
    """Every module name an import statement in `source` could load (with parents)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _with_parents(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".") if package else []
                if node.level - 1 > len(parts):
                    continue
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            if not base:
                continue
            yield from _with_parents(base)
            for alias in node.names:
                yield f"{base}.{alias.name}"  # a submodule, if there is one by that name


def _with_parents(name: str) -> Iterator[str]:
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        yield ".".join(parts[:i])


def native_names(data: bytes) -> Iterator[str]:
    """Candidate module names in an ELF file's strings (imports made from C).

    A C string literal ends in NUL, and the linker may store one as the tail
    of a longer one ("decimal" inside "_decimal"): every name ending a string
    is a candidate, and a word inside a message ("compression statistics ...",
    backports.zstd's) is not. Rust (pyo3) stores its literals unterminated and
    side by side ("string referencedatetime.combine"), so in a Rust native
    every run of name characters is one."""
    if _RUST in data:
        for m in _NAME.finditer(data):
            yield from _with_parents(m.group().decode("ascii"))
        return
    for m in _TAIL.finditer(data):
        run = m.group(1).decode("ascii")
        for i in range(len(run) - 1):
            if _NAME_START.match(run, i):  # any suffix: the linker may have shared it
                yield from _with_parents(run[i:])


def artifact_roots(zipapp: bytes, only: frozenset[str] | None = None) -> set[str]:
    """Module names the artifact's own files import (relative imports stay inside it);
    given `only` (the node profile's members), from those modules' sources alone."""
    roots: set[str] = set()
    with zipfile.ZipFile(BytesIO(zipapp)) as zf:
        for name in sorted(zf.namelist()):
            if only is not None and name not in only and name + "c" not in only:
                continue
            if name.endswith(".py"):
                is_package = name.endswith("__init__.py")
                stem = name.removeprefix("_native/")[:-3].removesuffix("__init__").rstrip("/")
                roots.update(imports_of(zf.read(name), stem.replace("/", "."), is_package))
            elif name.endswith(".so") or ".so." in posixpath.basename(name):
                roots.update(native_names(zf.read(name)))
    return roots


# Roots never imported by the tracer: importing them has effects (prints,
# opens a browser) and the artifact never needs them at run time.
_NO_TRACE = frozenset({"this", "antigravity", "idlelib", "tkinter", "turtle"})
_TRACER = """\
import importlib, importlib.util, json, os, sys, zipfile
names, app, native = json.load(open(sys.argv[1])), sys.argv[3], sys.argv[4]
sys.path[:0] = [native, app]
for name in names:
    try:
        __import__(name)
    except BaseException:
        pass
# A frozen module (os, site, codecs, importlib's bootstrap, ...) is loaded
# from the interpreter's own image, never from its file.
frozen = [n for n, m in sys.modules.items()
          if getattr(getattr(m, "__spec__", None), "origin", None) == "frozen"]
json.dump({"loaded": sorted(sys.modules), "frozen": sorted(frozen)}, open(sys.argv[2], "w"))
"""
TRACE_TIMEOUT_S = 300


class TraceError(Exception):
    pass


def lay_out(zipapp: bytes, app: Path, native: Path) -> None:
    """The artifact at `app` and its natives under `native`, as a node loads them."""
    app.write_bytes(zipapp)
    native.mkdir(exist_ok=True)
    with zipfile.ZipFile(BytesIO(zipapp)) as zf:
        for member in zf.namelist():
            if member.startswith(NATIVE_PREFIX) and not member.endswith("/"):
                dest = native / member[len(NATIVE_PREFIX):]
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(zf.read(member))


def run_pinned(runtime: Path, python: str, loader: str, lib_dirs: Iterable[str],
               script: str, args: list[str], cwd: str, timeout: float, what: str,
               error: type[Exception]) -> subprocess.CompletedProcess[bytes]:
    """`script` run by `runtime/python` through the runtime's own dynamic loader
    and libraries (so the host's Python and libc play no part), isolated (-I);
    a failure to run or a non-zero exit is `error` naming `what`."""
    libpath = ":".join(str(runtime / d) for d in lib_dirs)
    argv = [str(runtime / loader), "--library-path", libpath, str(runtime / python), "-I",
            "-c", script, *args]
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, cwd=cwd,
                              env={"PATH": os.defpath, "LANG": "C.UTF-8"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise error(f"{what}: {exc}") from exc
    if proc.returncode != 0:
        raise error(f"{what} failed (exit {proc.returncode}): "
                    f"{proc.stderr.decode(errors='replace')[-300:]}")
    return proc


def artifact_modules(zipapp: bytes) -> list[str]:
    """Every module of the artifact, by the name it is imported under (natives unprefixed)."""
    with zipfile.ZipFile(BytesIO(zipapp)) as zf:
        names = zf.namelist()
    out = []
    for name in sorted(names):
        # A source, or a sourceless pyc (a node profile keeps only those).
        if name.endswith(".pyc") and "__pycache__" not in name:
            name = name[:-1]
        if not name.endswith(".py") or name.endswith("__main__.py"):
            continue
        stem = name.removeprefix(NATIVE_PREFIX)[:-3].removesuffix("/__init__")
        if "-" not in stem and "." not in stem:
            out.append(stem.replace("/", "."))
    return sorted(set(out))


def traced(roots: Iterable[str], runtime: Path, python: str, loader: str,
           lib_dirs: Iterable[str], index: dict[str, str],
           zipapp: bytes | None = None) -> frozenset[str]:
    """Stdlib modules loaded when the pinned interpreter imports each of `roots`
    and, given `zipapp`, each module of the artifact (so what they import at
    import time, such as pyfuse3 reading its own metadata, is seen too).

    Runs `runtime/python` through the runtime's own dynamic loader and
    libraries (so the host's Python and libc play no part), isolated (-I).
    """
    always = {n for n in ALWAYS | ENCODINGS if n in index}
    # What `ALWAYS` imports in turn is traced too (encodings.idna needs
    # stringprep and unicodedata). Other codecs are not roots: the tracer's
    # imports do not look any up.
    base_names = sorted({n for n in roots if n in index and n.split(".")[0] not in _NO_TRACE}
                        | always)
    with tempfile.TemporaryDirectory(prefix="zosnode-trace-") as tmp:
        names_file, out_file = Path(tmp) / "names.json", Path(tmp) / "out.json"
        app, native = Path(tmp) / "app.pyz", Path(tmp) / "native"
        native.mkdir()
        if zipapp is not None:
            lay_out(zipapp, app, native)
            base_names += artifact_modules(zipapp)
        names_file.write_text(json.dumps(base_names))
        what = "tracing the artifact's imports"
        proc = run_pinned(runtime, python, loader, lib_dirs, _TRACER,
                          [str(names_file), str(out_file), str(app), str(native)],
                          tmp, TRACE_TIMEOUT_S, what, TraceError)
        if not out_file.exists():
            raise TraceError(f"{what} failed (exit 0): "
                             f"{proc.stderr.decode(errors='replace')[-300:]}")
        found = json.loads(out_file.read_text())
    wanted = {n for n in found["loaded"] if n in index} | always
    wanted |= {n for n, by in IMPORTED_BY.items() if by in wanted and n in index}
    for name in list(wanted):
        wanted.update(p for p in _with_parents(name) if p in index)
    # A package's __init__ stays for its submodules (importlib's is not frozen).
    return frozenset(wanted - (set(found["frozen"]) - {LANDMARK}))
