"""The stdlib closure the initramfs keeps, and the per-part sizes `initramfs list` prints."""

from __future__ import annotations

import marshal
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import pytest

from zosnode.bootmedia import closure, pyc
from zosnode.bootmedia.cpio import Entry, Kind
from zosnode.bootmedia.initramfs import part_of, part_sizes
from zosnode.bootmedia.pyc import sourceless_pyc

HOST_STDLIB = Path("/usr/lib/python3.11")


def test_imports_at_any_depth_and_relative_ones_resolved() -> None:
    src = b"""
import os.path
from . import sibling
from ..up import thing
def f():
    try:
        import json
    except ImportError:
        pass
    from email import message
"""
    found = set(closure.imports_of(src, "pkg.sub.mod", is_package=False))
    assert {"os", "os.path", "json", "email", "email.message", "pkg.sub", "pkg.sub.sibling",
            "pkg.up", "pkg.up.thing"} <= found
    assert not set(closure.imports_of(b"def (:", "x", False))  # unparsable: nothing


def test_native_strings_give_candidate_names() -> None:
    assert {"_strptime", "xml", "xml.etree"} <= set(closure.native_names(
        b"\0\x01_strptime\0xml.etree\0"))
    # A C string's tail may be another literal (the linker shares it); a word
    # inside a message is not one (backports.zstd's "statistics ... " kept
    # statistics, decimal and fractions in the image: 146 KB).
    found = set(closure.native_names(b"\0_decimal\0compression statistics ... \0error code\0"))
    assert {"decimal", "_decimal", "code"} <= found and "statistics" not in found
    # Rust stores literals unterminated, side by side: every run counts.
    rust = b"/rustc/58cf/library/std\0compression statistics ... "
    assert "statistics" in set(closure.native_names(rust))


def test_artifact_roots_read_python_and_natives(tmp_path: Path) -> None:
    app = tmp_path / "a.zip"
    with zipfile.ZipFile(app, "w") as zf:
        zf.writestr("pkg/__init__.py", "import hashlib\nfrom . import mod\n")
        zf.writestr("_native/ext.cpython-311-x86_64-linux-gnu.so", b"\x7fELF\0ssl\0")
    roots = closure.artifact_roots(app.read_bytes())
    assert {"hashlib", "pkg.mod", "ssl"} <= roots


@pytest.mark.skipif(not (HOST_STDLIB / "os.py").exists()
                    or not Path("/usr/bin/python3.11").exists(),
                    reason="needs the Debian python3.11 at /usr/bin (the runtime the image pins)")
def test_traced_keeps_what_an_import_loads_and_nothing_unrelated() -> None:
    index = closure.stdlib_index(HOST_STDLIB)
    mods = closure.traced({"json", "not_a_module", "this"}, Path("/"), "usr/bin/python3.11",
                          "lib64/ld-linux-x86-64.so.2",
                          ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"), index)
    assert {"json", "json.decoder", "re", "encodings", "encodings.idna", "_strptime",
            "encodings.cp437", "os"} <= mods
    # What the always-kept codecs import: encodings.idna, for a host name in
    # getaddrinfo, needs stringprep and unicodedata (the first VM boot with
    # the trimmed stdlib died there: "unknown encoding: idna").
    assert "stringprep" in mods  # unicodedata is built in
    # Codecs no node path names stay out (closure.ENCODINGS), CJK's C tables too.
    assert not {"encodings.shift_jis", "encodings.cp1252", "encodings.mac_roman"} & mods
    assert "_codecs_jp" not in mods and "_multibytecodec" not in mods
    # Frozen into the interpreter, never read from a file: out, but for os,
    # getpath's landmark for finding the standard library.
    assert not {"site", "codecs", "posixpath", "importlib._bootstrap", "zipimport"} & mods
    assert "unittest" not in mods and "sqlite3" not in mods and "this" not in mods
    assert mods <= set(index)


def test_traced_failure_is_a_trace_error(tmp_path: Path) -> None:
    with pytest.raises(closure.TraceError):
        closure.traced({"json"}, tmp_path, "usr/bin/python3.11", "lib64/ld.so", (), {"json": ""})


def test_part_sizes() -> None:
    entries = [Entry("init", Kind.FILE, 0o755, data=b"#!x\n" * 10),
               Entry("usr/bin/python3.11", Kind.FILE, 0o755, data=b"\x7fELF"),
               Entry("usr/lib/python3.11/os.pyc", Kind.FILE, 0o644, data=b"o"),
               Entry("usr/lib/x86_64-linux-gnu/libssl.so.3", Kind.FILE, 0o755, data=b"s"),
               Entry("lib/modules/6.1/kernel/fuse.ko", Kind.FILE, 0o644, data=b"k"),
               Entry("dev", Kind.DIR, 0o755)]
    sizes = part_sizes(entries)
    assert sizes["artifact"][:2] == (1, 40) and 0 < sizes["artifact"][2] < 40
    assert sizes["interpreter"][:2] == (1, 4)
    assert [sizes[p][0] for p in ("stdlib", "libraries", "modules", "other")] == [1, 1, 1, 1]
    assert part_of("lib64/ld-linux-x86-64.so.2") == "libraries"
    assert part_of("lib/zosnode/0123/pyfuse3/__init__.cpython-311-x86_64-linux-gnu.so") == \
        "natives"


@pytest.mark.skipif(not Path("/usr/bin/python3.11").exists(),
                    reason="needs the Debian python3.11 at /usr/bin (the runtime the image pins)")
def test_traced_runs_the_artifact_modules_import_time_code(tmp_path: Path) -> None:
    """pyfuse3 reads its own metadata at import time, which imports email.parser
    inside a stdlib function: no import statement of the artifact names it."""
    app = tmp_path / "a.zip"
    with zipfile.ZipFile(app, "w") as zf:
        zf.writestr("pkg/__init__.py", "import email\nemail.message_from_string('a: b')\n")
        zf.writestr("__main__.py", "raise SystemExit('never run')\n")
    index = closure.stdlib_index(HOST_STDLIB)
    args = (Path("/"), "usr/bin/python3.11", "lib64/ld-linux-x86-64.so.2",
            ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"), index)
    data = app.read_bytes()
    assert "email.parser" in closure.traced(closure.artifact_roots(data), *args, zipapp=data)
    assert "email.parser" not in closure.traced(closure.artifact_roots(data), *args)


def test_bytecode_leaves_docstrings_out_and_keeps_asserts_and_lines() -> None:
    source = (b'"""Module doc."""\n'
              b'def f(x):\n    """Function doc."""\n    assert x, "kept"\n    return 1 / x\n'
              b'class C:\n    """Only a docstring."""\n'
              b'@staticmethod\nclass D(C):\n    """+ extends C\'s, as in email._policybase."""\n')
    ns: dict[str, object] = {}
    exec(marshal.loads(sourceless_pyc(source, "m.py")[16:]), ns)  # noqa: S102 - our source
    f, c = ns["f"], ns["C"]
    assert "__doc__" not in ns and f.__doc__ is None and c.__doc__ is None
    assert ns["D"].__doc__ is None  # decorated too: never one without its base's
    with pytest.raises(AssertionError, match="kept"):
        f(0)  # type: ignore[operator]
    try:
        f("x")  # type: ignore[operator]
    except TypeError as exc:
        assert exc.__traceback__ is not None
        assert exc.__traceback__.tb_next.tb_lineno == 5  # type: ignore[union-attr]


_REFERENCE = """
import marshal, sys
source = open(sys.argv[1], "rb").read()
sys.stdout.buffer.write(marshal.dumps(compile(source, sys.argv[1], "exec", dont_inherit=True)))
"""


@pytest.mark.parametrize("path", [
    "/usr/lib/python3.11/asyncio/base_events.py",  # long, nested, multi-line expressions
    "/usr/lib/python3.11/email/_header_value_parser.py",
    str(Path(__file__).resolve().parents[2] / "zosnode/bootmedia/pyc.py"),
])
def test_bytecode_has_the_line_table_of_no_debug_ranges(path: str) -> None:
    """Every code object's table is the one CPython writes under `-X
    no_debug_ranges`: the same lines for every instruction, no columns."""
    if not Path(path).exists():
        pytest.skip(f"{path} is not on this machine")
    source = Path(path).read_bytes()
    ours = pyc.without_columns(compile(source, path, "exec", dont_inherit=True))
    out = subprocess.run([sys.executable, "-X", "no_debug_ranges", "-c", _REFERENCE, path],
                         check=True, capture_output=True).stdout
    reference = marshal.loads(out)
    pairs = [(ours, reference)]
    while pairs:
        a, b = pairs.pop()
        assert a.co_linetable == b.co_linetable and a.co_code == b.co_code, a.co_qualname
        assert [p[2:] for p in a.co_positions()] == [(None, None)] * len(list(a.co_positions()))
        pairs += [(x, y) for x, y in zip(a.co_consts, b.co_consts, strict=True)
                  if isinstance(x, types.CodeType)]
    with_columns = compile(source, path, "exec", dont_inherit=True)
    assert [line for *_, line in ours.co_lines()] == [line for *_, line in with_columns.co_lines()]
    assert len(marshal.dumps(ours)) < len(marshal.dumps(with_columns))
