"""Which standard-library modules the initramfs needs: the artifact's import closure.

Computed at build time in two steps. The roots, statically: every import
statement in every Python file of the artifact, at any depth (in functions,
in `try` blocks), all of it, not only the node's paths (the one artifact also
holds the builder and hub commands, so their stdlib needs come along, see
docs/boot.md), plus the names its native extensions import from C (string
constants in the ELF file). Then, by running: the pinned runtime's own
interpreter imports each root that is a stdlib module (`traced`), and every
module that import loads is kept, plus `ALWAYS`.

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
# (copyreg), sysconfig's platform data module, and the traceback printer.
ALWAYS = frozenset({
    "encodings", "site", "_sitebuiltins", "os", "stat", "posixpath", "genericpath",
    "_collections_abc", "io", "abc", "codecs", "warnings", "_strptime", "copyreg",
    "_compat_pickle", "linecache", "tokenize", "traceback", "_weakrefset", "types",
    "_sysconfigdata__x86_64-linux-gnu", "_sysconfigdata__linux_x86_64-linux-gnu",
})
ALWAYS_PACKAGES = ("encodings",)  # every submodule, not only the package
NATIVE_PREFIX = "_native/"  # as in zosnode/artifact/record.py (not imported: build side)
_CJK = re.compile(r"encodings\.(big5|cp932|cp949|cp950|euc_|gb|hz|iso2022_|johab|shift_jis)")
_NAME = re.compile(rb"[A-Za-z_][A-Za-z0-9_.\-]{1,80}")


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
    """Candidate module names in an ELF file's strings (imports made from C)."""
    for m in _NAME.finditer(data):
        yield from _with_parents(m.group().decode("ascii"))


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


def closure(roots: Iterable[str], base: Path, index: dict[str, str]) -> frozenset[str]:
    """The stdlib modules (keys of `index`) reachable from `roots`."""
    wanted = set(ALWAYS)
    wanted.update(n for n in index if n.startswith(tuple(p + "." for p in ALWAYS_PACKAGES)))
    stack = [n for n in set(roots) | wanted if n in index]
    seen: set[str] = set()
    while stack:
        name = stack.pop()
        if name in seen or name not in index:
            continue
        seen.add(name)
        stack.extend(p for p in _with_parents(name) if p not in seen)
        rel = index[name]
        data = (base / rel).read_bytes()
        found = (native_names(data) if rel.endswith(".so")
                 else imports_of(data, name, rel.endswith("/__init__.py")))
        stack.extend(n for n in found if n in index and n not in seen)
    return frozenset(seen)


# Roots never imported by the tracer: importing them has effects (prints,
# opens a browser) and the artifact never needs them at run time.
_NO_TRACE = frozenset({"this", "antigravity", "idlelib", "tkinter", "turtle"})
_TRACER = """\
import json, sys, zipfile
names, app, native = json.load(open(sys.argv[1])), sys.argv[3], sys.argv[4]
sys.path[:0] = [native, app]
for name in names:
    try:
        __import__(name)
    except BaseException:
        pass
json.dump(sorted(sys.modules), open(sys.argv[2], "w"))
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
    always = {n for n in ALWAYS if n in index}
    always.update(n for n in index if n.startswith(tuple(p + "." for p in ALWAYS_PACKAGES)))
    # What `ALWAYS` imports in turn is traced too (encodings.idna needs
    # stringprep and unicodedata), except the CJK codecs' C tables: their
    # encodings.* stubs stay, and a lookup of one answers "unknown encoding".
    traced_always = {n for n in always if not _CJK.match(n)}
    base_names = sorted({n for n in roots if n in index and n.split(".")[0] not in _NO_TRACE}
                        | traced_always)
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
        loaded = json.loads(out_file.read_text())
    wanted = {n for n in loaded if n in index} | always
    for name in list(wanted):
        wanted.update(p for p in _with_parents(name) if p in index)
    return frozenset(wanted)
