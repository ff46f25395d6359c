"""The node profile (bootmedia/profile.py): which members, written how, checked how."""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import platform
import sys
import textwrap
import types
import typing
import zipfile
from pathlib import Path
from typing import Any

import pytest

from zosnode.artifact.record import RECORD_NAME, ArtifactError
from zosnode.artifact.unpack import ensure_native
from zosnode.bootmedia import profile


def _zipapp(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 2, 3, 4, 6)), data,
                        compress_type=zipfile.ZIP_DEFLATED)
    return b"#!/usr/bin/python3.11\n" + buf.getvalue()


NAMES = ["zosnode/agent.py", "zosnode/agent.pyc", "zosnode/hub.py", "zosnode/hub.pyc",
         "zosnode/_artifact.json", "pkg-1.0.dist-info/METADATA",
         "_native/fuse/__init__.pyc",
         "_native/fuse/_fuse.cpython-311-x86_64-linux-gnu.so", "_native/cdc/fast.so",
         "_native/cdc/py.typed", "_native/fuse/py.typed", "zosnode/web/site.css",
         "zosnode/web/__init__.pyc", "README"]


def test_select_keeps_loaded_modules_as_the_importer_finds_them_and_all_data() -> None:
    loaded = ["zosnode/agent.py", "_native/fuse/__init__.pyc",
              "_native/fuse/_fuse.cpython-311-x86_64-linux-gnu.so"]
    assert profile.select(NAMES, loaded) == sorted([
        "zosnode/agent.pyc",  # the pyc, not the source, in the zip part
        "zosnode/_artifact.json", "pkg-1.0.dist-info/METADATA", "README",
        "_native/fuse/py.typed",  # beside a loaded module; cdc's and web's are not
        "_native/fuse/__init__.pyc",  # sourceless, as the artifact holds it
        "_native/fuse/_fuse.cpython-311-x86_64-linux-gnu.so"])


def test_metadata_goes_with_its_distribution_and_without_record() -> None:
    records = {
        "_native/fuse-3.5.dist-info/RECORD": b"fuse/__init__.py,sha256=x,1\n"
                                              b"fuse-3.5.dist-info/METADATA,,\n",
        "_native/cdc-0.3.dist-info/RECORD": b"cdc/fast.so,sha256=y,2\n",
        "_native/cffi-2.1.dist-info/RECORD": b"_cffi_backend.cpython-311-x86_64-linux-gnu.so,,\n"
                                              b"cffi/api.py,,\n",
    }
    dists = profile.distributions(_zipapp(records))
    assert dists == {"_native/fuse-3.5.dist-info": {"fuse"}, "_native/cdc-0.3.dist-info": {"cdc"},
                     "_native/cffi-2.1.dist-info": {"_cffi_backend", "cffi"}}
    names = [*NAMES, *records, "_native/fuse-3.5.dist-info/METADATA",
             "_native/fuse-3.5.dist-info/licenses/LICENSE", "_native/cdc-0.3.dist-info/METADATA",
             "_native/cffi-2.1.dist-info/METADATA", "_native/_cffi_backend.cpython-311.so"]
    loaded = ["_native/fuse/__init__.pyc", "_native/_cffi_backend.cpython-311.so"]
    held = set(profile.select(names, loaded, dists))
    # pyfuse3 reads its version from METADATA at import: a held distribution's
    # metadata and license stay, its RECORD (stale: the natives are stripped) goes.
    assert {"_native/fuse-3.5.dist-info/METADATA", "_native/fuse-3.5.dist-info/licenses/LICENSE",
            "_native/cffi-2.1.dist-info/METADATA"} <= held
    assert not {n for n in held if n.endswith("/RECORD")}
    # A distribution with no module on the node has no metadata there.
    assert not {n for n in held if n.startswith("_native/cdc-0.3.dist-info/")}
    # Without the distributions, every dist-info member stays, as before.
    assert set(records) <= set(profile.select(names, loaded))


def test_written_profile_is_stored_and_byte_identical_and_check_catches_a_change() -> None:
    app = _zipapp({n: n.encode() * 50 for n in NAMES})
    members = ["zosnode/agent.pyc", "zosnode/_artifact.json"]
    node = profile.write(app, members)
    assert profile.write(app, members) == node  # reproducible
    with zipfile.ZipFile(io.BytesIO(node)) as zf:
        assert zf.namelist() == sorted(members)
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
        assert zf.getinfo("zosnode/agent.pyc").date_time == (2020, 1, 2, 3, 4, 6)
    assert profile.check(node, app) == []
    info = profile.describe(app, node)
    assert sorted(info["files"]) == sorted(members)  # type: ignore[call-overload]
    tampered = profile.write(_zipapp({**{n: n.encode() * 50 for n in NAMES},
                                      "zosnode/agent.pyc": b"evil"}), members)
    assert profile.check(tampered, app) == ["zosnode/agent.pyc differs from the artifact's"]
    foreign = profile.write(_zipapp({"x.pyc": b"x"}), ["x.pyc"])
    assert profile.check(foreign, app) == ["x.pyc is not in the artifact"]


def test_a_profile_unpacks_the_natives_it_holds_checked_against_the_record(
        tmp_path: Path) -> None:
    fuse, cdc = b"\x7fELF fuse", b"\x7fELF cdc"
    record = {"build_id": "ab" * 32, "source_date_epoch": 0, "python_tag": "cp311",
              "packages": [], "native_files": {
                  "fuse/_fuse.so": hashlib.sha256(fuse).hexdigest(),
                  "cdc/fast.so": hashlib.sha256(cdc).hexdigest()}}
    app = _zipapp({RECORD_NAME: json.dumps(record).encode(),
                   "_native/fuse/_fuse.so": fuse, "_native/cdc/fast.so": cdc})
    node = tmp_path / "init"
    node.write_bytes(profile.write(app, [RECORD_NAME, "_native/fuse/_fuse.so"]))
    native_dir, _ = ensure_native(node, tmp_path / "rt")
    assert sorted(p.name for p in native_dir.rglob("*") if p.is_file()) == ["_fuse.so"]
    # A member that differs from the record is still refused.
    bad = tmp_path / "bad"
    bad.write_bytes(profile.write(_zipapp({RECORD_NAME: json.dumps(record).encode(),
                                           "_native/fuse/_fuse.so": b"other"}),
                                  [RECORD_NAME, "_native/fuse/_fuse.so"]))
    with pytest.raises(ArtifactError):
        ensure_native(bad, tmp_path / "rt2")


def test_what_the_probe_does_not_follow_is_named_by_no_node_code() -> None:
    # profile.NOT_FOLLOWED is only sound while zosnode itself never reaches it:
    # backports.zstd._shutil is imported by register_shutil() alone.
    top = Path(__file__).resolve().parents[2] / "zosnode"
    names = [*profile.NOT_FOLLOWED, "register_shutil"]
    for path in top.rglob("*.py"):
        if path.parent.name == "bootmedia":
            continue
        text = path.read_text()
        assert not [n for n in names if n in text], path


# zosnode modules that import by a computed name, and why the profile still
# holds the targets. The probe follows literal names only: a new computed
# import on a node path must be named in profile.ENTRY_POINTS (b4246a2's
# netlink._module(name) once silently left pyroute2's sockets off the node).
COMPUTED_IMPORTS = {
    "zosnode/agent/main.py": "BootStage.MODULE, zosnode.agent.boot, is an entry module",
    "zosnode/cli/__init__.py": "the command groups, whose parsers the probe builds",
    "zosnode/cli/audit_cmd.py": "workstation only",
}


def test_every_import_by_computed_name_is_accounted_for() -> None:
    top = Path(__file__).resolve().parents[2]
    found: set[str] = set()
    for path in sorted((top / "zosnode").rglob("*.py")):
        rel = path.relative_to(top).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            arg = node.args[0]
            if name == "import_module" and not isinstance(arg, ast.Constant):
                found.add(rel)
    assert found == set(COMPUTED_IMPORTS)
    assert "zosnode.agent.boot" in profile.ENTRY_POINTS["node run"][1]


# The probe's import following (profile._FOLLOW) run in this interpreter: it
# reads the node's facts from the one running it, CPython 3.11 on Linux.
NODE_LIKE = pytest.mark.skipif(
    sys.platform != "linux" or sys.version_info[:2] != (3, 11)
    or sys.implementation.name != "cpython",
    reason="the node's facts are read from the running interpreter: needs CPython 3.11 on Linux")


def _follow(source: str, ours: tuple[str, ...] = (), **globs: Any) -> set[str]:
    """The module names the probe follows in `source`, as module `pkg.mod`
    whose module-level names are `globs` (sys, os, platform by default)."""
    ns: dict[str, Any] = {}
    exec(profile._FOLLOW, ns)  # noqa: S102 (our own source)
    ns["OURS"] = ours
    module = types.ModuleType("pkg.mod")
    vars(module).update({"sys": sys, "os": os, "platform": platform, **globs})
    mods, _ = ns["named"](module, ast.parse(textwrap.dedent(source)))
    return {m.split(".")[0] for m in mods if m.startswith("m_")}


# (condition, whether its body runs on a node): each as `if C: import m_body
# else: import m_else`, at module level and inside a function.
DECIDABLE = [
    ('sys.platform == "win32"', False), ('sys.platform != "linux"', False),
    ('sys.platform == "linux"', True), ('sys.platform == "darwin"', False),
    ('sys.platform.startswith("win")', False), ('sys.platform.startswith(("linux", "x"))', True),
    ('os.name == "nt"', False), ('os.name == "posix"', True),
    ("sys.version_info < (3, 11)", False), ("sys.version_info >= (3, 11)", True),
    ("sys.version_info >= (3, 12)", False), ("sys.version_info[:2] == (3, 11)", True),
    ("sys.version_info.minor >= 12", False), ("sys.hexversion < 0x030B0000", False),
    ("(3, 13, 8) <= sys.version_info < (3, 14)", False),
    ("sys.version_info >= (3, 11, 99)", False),  # the pinned interpreter's micro is the node's
    ('sys.implementation.name == "cpython"', True), ('platform.system() == "Windows"', False),
    ("TYPE_CHECKING", False), ("typing.TYPE_CHECKING", False), ("not typing.TYPE_CHECKING", True),
    # a module the probe cannot find is never in sys.modules on a node
    ('"sphinx.ext.autodoc" in sys.modules', False), ('"sphinx" not in sys.modules', True),
    # one operand decides and/or whatever the others are (trio's imports)
    ('sys.platform == "win32" or (not typing.TYPE_CHECKING and "sphinx.ext.autodoc" in '
     "sys.modules)", False),
    ('sys.platform != "linux" and hasattr(select, "epoll")', False),
    ('sys.platform == "linux" or hasattr(select, "epoll")', True),
]


@NODE_LIKE
@pytest.mark.parametrize(("test", "runs"), DECIDABLE)
def test_a_branch_that_can_never_run_on_a_node_is_not_followed(test: str, runs: bool) -> None:
    taken = {"m_body"} if runs else {"m_else"}
    globs: dict[str, Any] = {"typing": typing, "TYPE_CHECKING": False}
    assert _follow(f"if {test}:\n    import m_body\nelse:\n    import m_else\n",
                   **globs) == taken
    assert _follow(f"def f():\n    if {test}:\n        from m_body import x\n"
                   f"    else:\n        from m_else import y\n", **globs) == taken


UNDECIDABLE = [
    'hasattr(select, "kqueue")', 'typing.TYPE_CHECKING or hasattr(select, "kqueue")',
    '"asyncio" in sys.modules',  # importable: something may have imported it
    'config.uname[0][-3:] == "BSD"',  # not a module of the artifact (OURS empty)
    'sys.argv[0] == "x"', 'os.environ.get("X") == "1"', 'sys.platform == foo()',
    "PY_3_14_PLUS",
]


@NODE_LIKE
@pytest.mark.parametrize("test", UNDECIDABLE)
def test_a_branch_that_can_run_is_followed(test: str) -> None:
    config = types.ModuleType("config")
    config.uname = platform.uname()  # type: ignore[attr-defined]
    globs: dict[str, Any] = {"typing": typing, "select": __import__("select"),
                             "config": config, "foo": lambda: "linux", "PY_3_14_PLUS": False}
    # `elif 1` is decided true: the else after it is dropped, the undecided body kept.
    source = (f"if {test}:\n    import m_body\nelif 1:\n    import m_elif\n"
              "else:\n    import m_else\n")
    assert _follow(source, **globs) == {"m_body", "m_elif"}


@NODE_LIKE
def test_only_the_module_a_name_is_bound_to_counts() -> None:
    src = 'if sys.platform == "win32":\n    import m_win\nelse:\n    import m_other\n'
    assert _follow(src.replace("sys.", "_sys."), _sys=sys) == {"m_other"}  # import sys as _sys
    # A name bound to something else (or not at all) decides nothing.
    assert _follow(src, sys=types.SimpleNamespace(platform="win32")) == {"m_win", "m_other"}
    assert _follow(src.replace("sys.", "nosuch.")) == {"m_win", "m_other"}
    # elif chains: only the branch a node takes (pyroute2.iproute's __init__).
    chain = ('if sys.platform.startswith("win"):\n    import m_win\n'
             'elif sys.platform.startswith("darwin"):\n    import m_mac\n'
             "else:\n    import m_linux\n")
    assert _follow(chain) == {"m_linux"}


@NODE_LIKE
def test_platform_uname_held_by_a_module_of_the_artifact_is_the_nodes_system(
        tmp_path: Path) -> None:
    config = types.ModuleType("cfg")
    config.__file__ = str(tmp_path / "cfg.py")
    config.uname = platform.uname()  # type: ignore[attr-defined]
    src = 'if config.uname[0][-3:] == "BSD":\n    import m_bsd\nelse:\n    import m_linux\n'
    assert _follow(src, (str(tmp_path),), config=config) == {"m_linux"}
    # Its other fields (host name, kernel release) are the build machine's, not the node's.
    other = src.replace("uname[0][-3:]", "uname[2]")
    assert _follow(other, (str(tmp_path),), config=config) == {"m_bsd", "m_linux"}
    # A tuple of the same strings (pyroute2's, built field by field) is not known to be uname.
    config.uname = tuple(platform.uname())  # type: ignore[attr-defined]
    assert _follow(src, (str(tmp_path),), config=config) == {"m_bsd", "m_linux"}
