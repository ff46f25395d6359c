"""The artifact: reproducible, self-contained, and it never loads a tampered native."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.foundation.conftest import build
from zosnode.cli.audit_cmd import read_record

NATIVE_DISTS = {"pynacl", "cffi", "xxhash", "pyfuse3", "backports-zstd",
                "pyfastcdc"}


def run_pyz(pyz: Path, runtime: Path, *argv: str, cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    # A bare interpreter: no environment, isolated mode, no site-packages.
    env = {"ZOSNODE_RUNTIME_DIR": str(runtime)}
    return subprocess.run(
        ["env", "-i", *(f"{k}={v}" for k, v in env.items()), "python3", "-I", str(pyz), *argv],
        capture_output=True, text=True, cwd=cwd or pyz.parent, timeout=120,
    )


def test_two_builds_are_byte_identical(artifact: Path, tmp_path: Path) -> None:
    again = build(tmp_path / "again.pyz")
    assert hashlib.sha256(again.read_bytes()).hexdigest() == \
        hashlib.sha256(artifact.read_bytes()).hexdigest()


def test_natives_carry_no_debug_info(artifact: Path, tmp_path: Path) -> None:
    # The wheels' shared objects come with DWARF (libsodium 5.3 MB, 0.6 MB
    # without); the build strips it, and the record hashes the stripped bytes.
    record = read_record(artifact)
    with zipfile.ZipFile(artifact) as zf:
        shared = [n for n in zf.namelist() if n.startswith("_native/") and n.endswith(".so")]
        assert shared, "no native shared objects in the artifact"
        for name in shared:
            data = zf.read(name)
            one = tmp_path / "one.so"
            one.write_bytes(data)
            sections = subprocess.run(["readelf", "-S", "-W", str(one)], capture_output=True,
                                      text=True, check=True).stdout
            assert ".debug_info" not in sections, name
            assert record.native_files[name.removeprefix("_native/")] == \
                hashlib.sha256(data).hexdigest()
    print(f"{len(shared)} native shared objects, none with debug info")


def test_metadata_without_readme_and_natives_without_sources(artifact: Path) -> None:
    """A dist-info METADATA keeps its headers (a version read still works:
    pyfuse3 reads its own at import), not the README after them; a native
    package's Python modules are sourceless pycs, which a directory loads."""
    with zipfile.ZipFile(artifact) as zf:
        names = zf.namelist()
        metas = [n for n in names if n.endswith(".dist-info/METADATA")]
        assert len(metas) >= 10
        for name in metas:
            text = zf.read(name).decode()
            assert "\n\n" not in text[:-1] and text.startswith("Metadata-Version:"), name
            assert "\nVersion: " in text, name
        assert "_native/nacl/signing.pyc" in names
        assert not [n for n in names
                    if n.startswith("_native/") and (n.endswith(".py") or "__pycache__" in n)]


def test_audit_json_from_a_bare_interpreter_outside_the_checkout(
    artifact: Path, tmp_path: Path
) -> None:
    proc = run_pyz(artifact, tmp_path / "rt", "audit", "--json", "--check-imports", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["sha256"] == hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert report["build_id"] == read_record(artifact).build_id
    names = {p["name"] for p in report["sbom"]}
    assert {"trio", "h11", "pynacl", "xxhash", "pyfuse3"} <= names
    assert "pyroute2" not in names  # the node speaks netlink itself (zosnode/net/netlink.py)
    assert {p["name"] for p in report["sbom"] if p["native"]} == NATIVE_DISTS
    for dist, where in report["imports"].items():
        assert not where.startswith("FAILED"), (dist, where)
        if dist in NATIVE_DISTS:
            assert where.startswith(str(tmp_path / "rt")), (dist, where)
        else:  # pure Python comes straight from the zip
            assert where.startswith(str(artifact)), (dist, where)
    assert any(f["path"] == "__main__.py" for f in report["files"])


@pytest.mark.parametrize("damage", ["alter", "truncate", "delete", "extra", "symlink"])
def test_tampered_native_tree_is_detected_and_replaced(
    artifact: Path, tmp_path: Path, damage: str
) -> None:
    runtime = tmp_path / "rt"
    assert run_pyz(artifact, runtime, "version").returncode == 0
    record = read_record(artifact)
    tree = runtime / record.build_id[:32]
    so = next(p for p in sorted(tree.rglob("*.so")) if "nacl" in p.parts)
    original = so.read_bytes()
    so.chmod(0o644)
    if damage == "alter":
        data = bytearray(original)
        data[len(data) // 2] ^= 0xFF
        so.write_bytes(bytes(data))
    elif damage == "truncate":
        so.write_bytes(original[:4096])
    elif damage == "delete":
        so.unlink()
    elif damage == "extra":
        # A module that would shadow a real one if the tree were trusted.
        (tree / "trio.py").write_text("raise SystemExit('shadowed')\n")
    elif damage == "symlink":
        so.unlink()
        so.symlink_to("/bin/true")

    proc = run_pyz(artifact, runtime, "audit", "--json", "--check-imports")
    assert proc.returncode == 0, proc.stderr
    assert "rejected" in proc.stderr and "rebuilding" in proc.stderr
    assert not so.is_symlink()
    assert so.read_bytes() == original
    assert not (tree / "trio.py").exists()
    assert not any(v.startswith("FAILED") for v in json.loads(proc.stdout)["imports"].values())
    # A clean start after repair says nothing.
    proc = run_pyz(artifact, runtime, "version")
    assert proc.returncode == 0 and proc.stderr == ""


def test_concurrent_starts_on_an_empty_runtime_dir(artifact: Path, tmp_path: Path) -> None:
    runtime = tmp_path / "rt"
    env = {"ZOSNODE_RUNTIME_DIR": str(runtime), "PATH": os.environ.get("PATH", "/usr/bin")}
    procs = [
        subprocess.Popen(["python3", "-I", str(artifact), "audit", "--json", "--check-imports"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(6)
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        imports = json.loads(out)["imports"]
        assert not any(v.startswith("FAILED") for v in imports.values())
    # Exactly one tree, no temporary leftovers.
    assert [p.name for p in runtime.iterdir()] == [read_record(artifact).build_id[:32]]


GC_PROBE = """
import atexit, gc, runpy, sys

class Watch:  # records the collector's state as the entry module and the command's load
    seen = {}
    def find_spec(self, name, path=None, target=None):
        if name in ("zosnode.entry", "zosnode.cli"):
            self.seen[name] = gc.isenabled()
        return None

sys.meta_path.insert(0, Watch())
atexit.register(lambda: print("gc", Watch.seen, gc.isenabled(), gc.get_freeze_count() > 10000,
                              file=sys.stderr))
sys.argv = [sys.argv[1], "version"]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_the_artifact_imports_without_the_collector_and_runs_with_it_frozen_after(
        artifact: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        ["env", "-i", f"ZOSNODE_RUNTIME_DIR={tmp_path}", "python3", "-I", "-c", GC_PROBE,
         str(artifact)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # Off while the entry module and the command load; then what they made frozen, and on.
    assert "gc {'zosnode.entry': False, 'zosnode.cli': False} True True" in proc.stderr, \
        proc.stderr


# Runs the artifact's __main__ (`version`, so it returns), then imports the node's modules
# through what __main__ left: argv = artifact, modules (JSON). Prints what it saw (JSON).
_PRECOMPILED_PROBE = r"""
import dataclasses, hashlib, importlib, json, re, runpy, sys
pyz, modules = sys.argv[1], json.loads(sys.argv[2])
sys.argv = [pyz, "version"]
try:
    runpy.run_path(pyz, run_name="__main__")
except SystemExit:
    pass
sys.path.insert(0, pyz)  # run_path took it off again
hook = getattr(dataclasses, "exec", exec)
table = getattr(hook, "table", None)
missed = []
if table is not None:
    def spy(source, globals=None, locals=None):
        if isinstance(source, str):
            if hashlib.blake2b(source.encode(), digest_size=8).digest() not in table:
                missed.append(re.search(r"\n def (\w+)\(", source)[1])
        hook(source, globals, locals)
    dataclasses.exec = spy
for name in modules:
    importlib.import_module(name)
node_missed = list(missed)
from zosnode.trust.envelope import Envelope  # one of the node's, from the table
new = dataclasses.make_dataclass("New", [("x", int)], frozen=True)  # not in it: compiled
dataclasses.exec = hook
fields = [f.name for f in dataclasses.fields(Envelope)]
try:
    new(1).x = 2
    frozen = False
except dataclasses.FrozenInstanceError:
    frozen = True
print(json.dumps({"hooked": table is not None, "entries": len(table or ()), "missed": missed,
                  "node_missed": node_missed, "doc": new.__doc__,
                  "new": [new(1) == new(1), new(1) != new(2), repr(new(3)), frozen],
                  "fields": fields}))
"""


def _precompiled(pyz: Path, runtime: Path) -> dict[str, object]:
    from zosnode.cli.audit_tcb import ENTRY_POINTS

    modules = sorted({m for names in ENTRY_POINTS.values() for m in names})
    proc = subprocess.run(
        ["env", "-i", f"ZOSNODE_RUNTIME_DIR={runtime}", "python3", "-I", "-c",
         _PRECOMPILED_PROBE, str(pyz), json.dumps(modules)],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    seen: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    return seen


def test_node_dataclass_methods_come_compiled(artifact: Path, tmp_path: Path) -> None:
    """Every method dataclasses writes for the node's classes is in the build's table but those
    left out on purpose; a class the table lacks is compiled as usual, and works (its __doc__ is
    its name: no signature is asked for while the artifact starts)."""
    from build_zipapp import DATACLASS_LEFT_OUT

    seen = _precompiled(artifact, tmp_path / "rt")
    assert seen["hooked"] and int(seen["entries"]) > 200  # type: ignore[call-overload]
    missed, node_missed = seen["missed"], seen["node_missed"]
    assert isinstance(missed, list) and isinstance(node_missed, list)
    assert {"__init__", "__repr__", "__eq__"} <= set(missed), "is the probe looking?"
    assert set(node_missed) <= set(DATACLASS_LEFT_OUT)
    assert seen["new"] == [True, True, "New(x=3)", True]
    assert seen["doc"] == "New"
    assert seen["fields"]


_ATTRS_PROBE = r"""
import builtins, json, runpy, sys
pyz = sys.argv[1]
sys.argv = [pyz, "node", "run", "--help"]
real, missed = builtins.compile, []


def counting(source, filename, mode, *args, **kwargs):
    if str(filename).startswith("<attrs"):
        missed.append(filename)
    return real(source, filename, mode, *args, **kwargs)


builtins.compile = counting
try:
    runpy.run_path(pyz, run_name="__main__")
except SystemExit:
    pass
import attr
import trio  # noqa: F401  (its classes were made from the table)

# attrs' __hash__: the tuple of its class's type hash (of a name, under this start's seed)
# and the fields; the stored script's placeholder must have become this start's.
factory = attr.Factory(list)
type_hash = hash(attr._make._generate_unique_filename(attr.Factory, "hash"))
consts = attr.Factory.__hash__.__code__.co_consts
print(json.dumps({"hooked": len(getattr(attr._make.compile, "table", ())), "missed": missed,
                  "same_hash": hash((type_hash, list, False)) == hash(factory),
                  "sentinel_left": (1 << 62) + 0x5EED in consts}))
"""


def test_attrs_methods_come_compiled_with_this_starts_type_hash(artifact: Path,
                                                                tmp_path: Path) -> None:
    """A node command's attrs classes (attrs' own, trio's) take their methods from the build's
    table; a __hash__ stored with a placeholder gets this start's type hash, so it hashes as the
    script attrs wrote at this start would."""
    for _ in range(2):  # two starts, two hash seeds
        proc = subprocess.run(
            ["env", "-i", f"ZOSNODE_RUNTIME_DIR={tmp_path / 'rt'}", "python3", "-I", "-c",
             _ATTRS_PROBE, str(artifact)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        seen = json.loads(proc.stdout.splitlines()[-1])
        assert seen["hooked"] > 40 and seen["missed"] == [], seen
        assert seen["same_hash"] and not seen["sentinel_left"], seen


@pytest.mark.parametrize("change", ["other magic", "cut short"])
def test_an_unusable_table_is_ignored(artifact: Path, tmp_path: Path, change: str) -> None:
    """A table of another interpreter's bytecode, or one cut short: unused, the artifact runs."""
    other = tmp_path / "other.pyz"
    with zipfile.ZipFile(artifact) as src, zipfile.ZipFile(other, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "zosnode/_dataclass_methods.bin":
                assert data[4:] and data[:4] != b"\0\0\0\0"
                data = b"\0\0\0\0" + data[4:] if change == "other magic" else data[:1000]
            dst.writestr(info, data)
    seen = _precompiled(other, tmp_path / "rt")
    assert seen["hooked"] is False
    assert seen["new"] == [True, True, "New(x=3)", True]
    assert run_pyz(other, tmp_path / "rt2", "version").returncode == 0
