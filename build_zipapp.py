#!/usr/bin/env python3
"""Build dist/zosnode.pyz: the one audited artifact.

Reproducible: the same commit and the same wheelhouse give the same bytes
(entries sorted, timestamps from SOURCE_DATE_EPOCH or the commit time,
permissions fixed, unchecked-hash .pyc files).

Pure-Python packages sit at the archive root and import straight from the
zip. Any vendored package with a native extension goes under `_native/`; the
stdlib-only bootstrap (zosnode/artifact/unpack.py) places those on disk,
checked against the sha256 list in the build record, before anything else
is imported.

Usage: python3 build_zipapp.py [--python /usr/bin/python3] [-o dist/zosnode.pyz]
                               [--anchor FILE]
"""

from __future__ import annotations

import argparse
import email.parser
import hashlib
import io
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

TOP = Path(__file__).resolve().parent
sys.path.insert(0, str(TOP))

from zosnode.artifact.record import NATIVE_PREFIX, RECORD_NAME  # noqa: E402
from zosnode.artifact.sbom import BuildRecord, Package  # noqa: E402
from zosnode.bootmedia.pyc import sourceless_pyc  # noqa: E402

ANCHOR_NAME = "zosnode/trust/anchor.cbor"
DATACLASS_TABLE = "zosnode/_dataclass_methods.bin"
# How __main__ and the recorder key an attrs script: its text with a __hash__'s type hash
# (`hash((\n        -123,`) zeroed, its file name and mode; and the number zeroed, if any.
ATTRS_KEY = r'''
def _attrs_split(source):
    # (the text before a __hash__'s type hash, the number, the text after), or None
    import re

    found = re.search(r"hash\(\(\n *(-?\d+),", source)
    return None if found is None else (source[:found.start(1)], int(found[1]),
                                       source[found.end(1):])


def _attrs_key(source, filename, mode):
    import hashlib

    if not isinstance(source, str):
        return None, None
    parts = _attrs_split(source)
    text = source if parts is None else parts[0] + "0" + parts[2]
    key = hashlib.blake2b(f"{filename}\0{mode}\0{text}".encode(), digest_size=8).digest()
    return key, None if parts is None else parts[1]


_ATTRS_SENTINEL = (1 << 62) + 0x5EED  # the type hash in a stored __hash__: this start's replaces it
'''.strip()
MAIN = '''\
# zosnode artifact entry point: standard library only until natives are verified.
import gc
import os
import sys

# The cyclic collector's passes over the objects of modules being imported cost 7% of their
# import time; zosnode.entry freezes those objects and turns it on once the command is
# imported (`collector_on`).
gc.disable()


def _precompiled_dataclass_methods():
    # dataclasses compiles the source of each method it writes (6 a frozen class: 15% of the
    # node's imports). build_zipapp.py compiled each once, keyed by a BLAKE2b of its text (our
    # own classes' text: no adversary picks it); another text, or another interpreter's table,
    # is compiled as dataclasses would.
    import dataclasses
    import hashlib
    import importlib.util
    import marshal

    # A class without a docstring (the node's bytecode has none) gets one written from
    # inspect.signature: 91 signatures, 5 ms of a native start. Its name alone does.
    dataclasses.inspect = _NoSignature
    try:
        data = __loader__.get_data(os.path.join(os.path.dirname(__file__), "DATACLASS_TABLE"))
    except (OSError, AttributeError):
        return {}
    magic = importlib.util.MAGIC_NUMBER
    try:
        tables = marshal.loads(data[len(magic):]) if data.startswith(magic) else None
    except (ValueError, EOFError, TypeError):  # cut short: compiled as without it
        tables = None
    if not (isinstance(tables, tuple) and len(tables) == 2
            and all(isinstance(t, dict) for t in tables)):
        return {}
    table, attrs_table = tables

    def exec_(source, globals=None, locals=None):
        if isinstance(source, str):
            source = table.get(hashlib.blake2b(source.encode(), digest_size=8).digest(), source)
        exec(source, globals, locals)

    exec_.table = table
    dataclasses.exec = exec_
    return attrs_table  # for _precompiled_attrs_methods, once the natives are in


ATTRS_KEY


def _precompiled_attrs_methods(table):
    # attrs compiles each method it writes too (79 scripts: its own classes' and trio's). A
    # __hash__ script embeds hash() of a name, which the hash seed changes at every start: the
    # key zeroes it, the stored code gets this start's.
    if not table or sys.argv[1:2] not in (["node"], ["_mount-child"]):
        return
    import builtins
    import types

    real = builtins.compile

    def renumbered(c, old, new):
        if type(c) is int:
            return new if c == old else c
        if isinstance(c, tuple):
            return tuple(renumbered(x, old, new) for x in c)
        if isinstance(c, types.CodeType):
            return c.replace(co_consts=renumbered(c.co_consts, old, new))
        return c

    def compile_(source, filename, mode, *args, **kwargs):
        key, number = _attrs_key(source, filename, mode)
        hit = None if args or kwargs else table.get(key)
        if hit is None:
            return real(source, filename, mode, *args, **kwargs)
        code, hashed = hit
        return renumbered(code, _ATTRS_SENTINEL, number) if hashed else code

    compile_.table = table
    builtins.compile = compile_  # attr's own modules write methods as they import
    try:
        import attr._make
    finally:
        builtins.compile = real
    attr._make.compile = compile_


class _NoSignature:
    @staticmethod
    def signature(obj):
        return ""


_ATTRS_TABLE = _precompiled_dataclass_methods()


def _start():
    from pathlib import Path

    from zosnode.artifact.record import ArtifactError
    from zosnode.artifact.unpack import activate

    try:
        activate(Path(os.path.dirname(os.path.abspath(__file__))))
    except (ArtifactError, OSError) as exc:
        print(f"zosnode: cannot start: {exc}", file=sys.stderr)
        return 1
    _precompiled_attrs_methods(_ATTRS_TABLE)
    from zosnode.entry import main

    return main()


sys.exit(_start())
'''.replace("DATACLASS_TABLE", DATACLASS_TABLE).replace("ATTRS_KEY", ATTRS_KEY)

# Run in the first-pass artifact (natives activated as __main__ does) by the building
# interpreter: argv = archive, modules (JSON: the trusted code base's, as `zosnode audit
# --tcb` finds them, lazy imports followed); each method source dataclasses compiles while
# they are imported is recorded as its code (no line table: a generated method's traceback
# names no line), keyed as __main__ looks it up. A command beyond the node's compiles the
# rest of its methods itself.
DATACLASS_LEFT_OUT = ()
RECORDER = r'''
import dataclasses, hashlib, importlib, json, marshal, re, sys, types
from pathlib import Path

archive, modules = sys.argv[1], json.loads(sys.argv[2])
sys.path.insert(0, archive)
from zosnode.artifact.unpack import activate

activate(Path(archive))
table = {}
LEFT_OUT = DATACLASS_LEFT_OUT


def stripped(code):
    consts = tuple(stripped(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_linetable=b"", co_consts=consts)


def record(source, globals=None, locals=None):
    method = re.search(r"\n def (\w+)\(", source) if isinstance(source, str) else None
    if method is not None and method[1] not in LEFT_OUT:
        key = hashlib.blake2b(source.encode(), digest_size=8).digest()
        source = table.setdefault(key, stripped(compile(source, "<string>", "exec")))
    exec(source, globals, locals)


ATTRS_KEY
attrs_table = {}
real_compile = compile


def record_attrs(source, filename, mode, *args, **kwargs):
    key, _ = _attrs_key(source, filename, mode)
    if key is not None and not args and not kwargs and key not in attrs_table:
        parts = _attrs_split(source)
        text = source if parts is None else parts[0] + str(_ATTRS_SENTINEL) + parts[2]
        attrs_table[key] = (real_compile(text, filename, mode), parts is not None)
    return real_compile(source, filename, mode, *args, **kwargs)


import builtins

builtins.compile = record_attrs  # attr's own modules write methods as they import
import attr._make

builtins.compile = real_compile
attr._make.compile = record_attrs
dataclasses.exec = record
for name in modules:
    importlib.import_module(name)
sys.stdout.buffer.write(marshal.dumps((dict(sorted(table.items())),
                                       dict(sorted(attrs_table.items())))))
'''.replace("DATACLASS_LEFT_OUT", repr(DATACLASS_LEFT_OUT)).replace("ATTRS_KEY", ATTRS_KEY)


# Files of a vendored wheel that nothing imports at run time: the packages'
# own test suites and the C/Cython sources and type stubs their natives were
# built from (the wheel's sha256 in the build record still names what they
# came from). About 1 MB of the artifact, and the roots of much of the stdlib
# the initramfs would otherwise carry (zosnode/bootmedia/closure.py).
_NOT_RUN = re.compile(r"(^|/)_?tests?/|\.(c|h|cpp|pyx|pxd|pxi|pyi)$")


class BuildError(Exception):
    pass


# Shared objects in the wheels carry their DWARF debug info (libsodium alone
# is 5.3 MB with it, 0.6 MB without): dropped at build time, so the build
# record's sha256 per native file names the stripped bytes the node checks,
# while the package's own sha256 still names the wheel they came from.
# `strip --strip-unneeded` also drops the static symbol table (.symtab,
# .strtab: 0.4 MB of pyfuse3's and backports.zstd's), keeping the dynamic symbols, which
# are all the loader and Python resolve (PyInit_*, the libraries' imports).
_SHARED_OBJECT = re.compile(r"\.so(\.[0-9.]+)?$")


def strip_debug(data: bytes, name: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp, "in.so"), Path(tmp, "out.so")
        src.write_bytes(data)
        try:
            proc = subprocess.run(["strip", "--strip-unneeded", "-o", str(dst), str(src)],
                                  capture_output=True, text=True)
        except FileNotFoundError:
            raise BuildError("strip not found: install binutils") from None
        if proc.returncode != 0:
            raise BuildError(f"strip --strip-unneeded {name}: {proc.stderr.strip()}")
        return dst.read_bytes()


def source_date_epoch() -> int:
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env:
        return int(env)
    try:
        out = subprocess.run(["git", "-C", str(TOP), "log", "-1", "--format=%ct"],
                             capture_output=True, text=True, check=True).stdout.strip()
        return int(out)
    except (OSError, subprocess.CalledProcessError, ValueError):
        return 315532800  # 1980-01-01, the zip epoch


def pyc_bytes(source: bytes, display_name: str) -> bytes:
    """An unchecked-hash pyc: deterministic, trusted without the source, and
    without docstrings (asserts kept; zosnode/bootmedia/pyc.py says why)."""
    return sourceless_pyc(source, display_name)


def add_python(members: dict[str, bytes], name: str, data: bytes, in_zip: bool) -> None:
    """Add a .py with its pyc beside it, where zipimport looks first. A native
    package's module, which loads from a directory, is its sourceless pyc
    alone: a source there would be compiled instead (its pinned wheel holds it)."""
    members[name] = data
    if not name.endswith(".py"):
        return
    try:
        members[name[:-3] + ".pyc"] = pyc_bytes(data, name)
    except SyntaxError:
        return  # e.g. templates shipped as .py; imported never
    if not in_zip:
        del members[name]


def license_of(metadata: bytes) -> str:
    msg = email.parser.BytesParser().parsebytes(metadata, headersonly=True)
    expr = msg.get("License-Expression")
    if expr:
        return str(expr)
    for classifier in msg.get_all("Classifier") or []:
        if classifier.startswith("License ::"):
            return str(classifier.split("::")[-1].strip())
    lic = msg.get("License")
    return str(lic).splitlines()[0][:40] if lic else "UNKNOWN"


def collect(wheelhouse: Path, anchor: Path | None) -> tuple[dict[str, bytes], list[Package]]:
    sys.path.insert(0, str(TOP / "vendor"))
    import wheelhouse as wh  # vendor/wheelhouse.py

    vendored = wh.ensure(wheelhouse)
    members: dict[str, bytes] = {}
    packages: list[Package] = []
    for name, info in sorted(vendored.items()):
        with zipfile.ZipFile(wheelhouse / info["wheel"]) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
            native = any(n.endswith(".so") or ".so." in n for n in names)
            meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
            packages.append(Package(name=name, version=info["version"],
                                    license=license_of(zf.read(meta)),
                                    sha256=info["sha256"], native=native))
            for n in names:
                if "/__pycache__/" in n or n.endswith(".pyc") or _NOT_RUN.search(n):
                    continue
                target = NATIVE_PREFIX + n if native else n
                data = zf.read(n)
                if native and _SHARED_OBJECT.search(n):
                    data = strip_debug(data, n)
                elif n == meta:
                    data = data.split(b"\n\n", 1)[0] + b"\n"  # the headers, not the README
                add_python(members, target, data, in_zip=not native)

    for path in sorted((TOP / "zosnode").rglob("*")):
        if path.is_dir() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        rel = path.relative_to(TOP).as_posix()
        add_python(members, rel, path.read_bytes(), in_zip=True)
    if anchor is not None:
        members[ANCHOR_NAME] = anchor.read_bytes()
    add_python(members, "__main__.py", MAIN.encode(), in_zip=True)
    return members, packages


def build(output: Path, shebang: str, wheelhouse: Path, anchor: Path | None) -> BuildRecord:
    members, packages = collect(wheelhouse, anchor)
    epoch = source_date_epoch()
    stamp = time.gmtime(max(epoch, 315532800))[:6]
    record = _record(members, packages, shebang, epoch)
    members[DATACLASS_TABLE] = dataclass_table(_archive(members, record, shebang, stamp))
    record = _record(members, packages, shebang, epoch)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".zosnode-", dir=output.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_archive(members, record, shebang, stamp))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_name, 0o755)
        os.replace(tmp_name, output)
    except BaseException:
        os.unlink(tmp_name)
        raise
    return record


def _record(members: dict[str, bytes], packages: list[Package], shebang: str,
            epoch: int) -> BuildRecord:
    native_files = {
        n[len(NATIVE_PREFIX):]: hashlib.sha256(d).hexdigest()
        for n, d in members.items() if n.startswith(NATIVE_PREFIX)
    }
    ident = hashlib.sha256()
    for n in sorted(members):
        ident.update(n.encode() + b"\0" + hashlib.sha256(members[n]).digest())
    ident.update(shebang.encode())
    return BuildRecord(
        build_id=ident.hexdigest(),
        native_files=native_files,
        source_date_epoch=epoch,
        python_tag=f"cp{sys.version_info.major}{sys.version_info.minor}",
        packages=tuple(packages),
    )


def _archive(members: dict[str, bytes], record: BuildRecord, shebang: str,
             stamp: tuple[int, ...]) -> bytes:
    # The shebang shifts every offset; zipfile's reader finds the central
    # directory from the end, so a prefixed archive stays valid.
    buf = io.BytesIO()
    buf.write(f"#!{shebang}\n".encode())
    with zipfile.ZipFile(buf, "w") as zf:
        for n, data in sorted({**members, RECORD_NAME: record.to_json()}.items()):
            info = zipfile.ZipInfo(n, date_time=stamp)  # type: ignore[arg-type]
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = (0o100644 << 16)
            zf.writestr(info, data, compresslevel=9)
    return buf.getvalue()


def dataclass_table(first_pass: bytes) -> bytes:
    """The methods dataclasses writes for the node's classes, compiled (__main__ uses them)."""
    import importlib.util
    import json

    from zosnode.artifact.unpack import RUNTIME_ENV
    from zosnode.cli.audit_tcb import ENTRY_POINTS, probe

    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp, "first.pyz")
        archive.write_bytes(first_pass)
        before = os.environ.get(RUNTIME_ENV)
        os.environ[RUNTIME_ENV] = str(Path(tmp, "runtime"))
        try:
            modules = sorted({m for names in ENTRY_POINTS.values() for m in probe(archive, names)})
            proc = subprocess.run([sys.executable, "-I", "-X", "no_debug_ranges", "-c", RECORDER,
                                   str(archive), json.dumps(modules)], capture_output=True)
        finally:
            if before is None:
                del os.environ[RUNTIME_ENV]
            else:
                os.environ[RUNTIME_ENV] = before
    if proc.returncode != 0:
        last = proc.stderr.decode(errors="replace").strip().splitlines() or ["(no output)"]
        raise BuildError(f"recording the dataclass methods failed: {last[-1]}")
    return importlib.util.MAGIC_NUMBER + proc.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description="Build the zosnode single-file artifact.")
    ap.add_argument("--python", default="/usr/bin/python3", help="interpreter for the shebang")
    ap.add_argument("-o", "--output", type=Path, default=TOP / "dist" / "zosnode.pyz")
    ap.add_argument("--wheelhouse", type=Path, default=TOP / "build" / "wheels")
    ap.add_argument("--anchor", type=Path,
                    help="trust anchor to compile in (from zosnode release anchor)")
    args = ap.parse_args()
    if sys.version_info[:2] != (3, 11):
        print("build_zipapp: error: build with CPython 3.11 (the vendored natives are cp311)",
              file=sys.stderr)
        return 2
    if args.anchor is not None and not args.anchor.is_file():
        print(f"build_zipapp: error: {args.anchor}: no such file", file=sys.stderr)
        return 2
    try:
        record = build(args.output, args.python, args.wheelhouse, args.anchor)
    except Exception as exc:  # noqa: BLE001 - a build tool's one-line failure
        print(f"build_zipapp: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    digest = hashlib.sha256(args.output.read_bytes()).hexdigest()
    size = args.output.stat().st_size
    print(f"{args.output}  {size} bytes  sha256 {digest}  build {record.build_id[:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
