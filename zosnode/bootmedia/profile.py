"""The node profile of the artifact: the files a node's entry points can load.

The initramfs's `/init` is not the whole workstation artifact but a zip of
the subset of its files that `node run`, the FUSE mount child and `version`
can import, each member byte-identical to the artifact's file (sha256 listed
in `initramfs.json`, `check` compares the two archives). Builder, hub and
boot-media code, and the vendored code only they use (pyfastcdc, pycparser,
...), stay on the workstation. docs/boot.md has the
trade-off.

Which files, found at build time by running the artifact (`_PROBE`, in the
pinned interpreter, like closure.traced): import the entry points, then
follow every import a loaded module names, ours or vendored, at any depth
(lazy imports still run on a node; a branch whose test has the same value
on every node, such as `if TYPE_CHECKING:` or `if sys.platform == "win32":`,
only the way a node takes it: `_FOLLOW`), the
literal names given to `importlib.import_module`, and every `from P import
N` once more as `getattr(P, N)` (so a package's `__getattr__` facade runs
here if a node path could run it), until nothing new loads. A package whose `__init__` has not
run is followed only once something runs it.
A module's source is dropped from the zip where its unchecked-hash .pyc is
there (zipimport loads the .pyc first; tracebacks on the node show file and
line without the source text); the native part's modules are sourceless
pycs already (build_zipapp.py). Data files go with the modules of their
directory, metadata (dist-info) always.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

from zosnode.bootmedia import closure
from zosnode.bootmedia.errors import BuildInputError

NATIVE_PREFIX = "_native/"  # as in zosnode/artifact/record.py
RECORD_NAME = "zosnode/_artifact.json"  # likewise: only a zosnode artifact has one
# entry point -> (CLI groups whose parser is built, modules imported by name);
# "node run" and "mount child" hold zosnode.cli.audit_tcb.ENTRY_POINTS (the TCB)
# and the node group's CLI parser besides (`zosnode --debug node run`).
ENTRY_POINTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "start-up": ((), ("zosnode.artifact.unpack",)),  # what __main__ runs before any command
    "node run": (("node",), ("zosnode.agent.boot",)),
    "mount child": ((), ("zosnode.mount.child",)),
    "version": (("version",), ()),
}
# Modules named only inside a vendored function that nothing on a node calls,
# not followed (a node path importing one would fail with ImportError; the VM
# tests run every node path): backports.zstd's register_shutil(), for
# applications that want shutil's archive formats with zstd, is what brings
# its copies of tarfile and zipfile (0.5 MB); zosnode never calls it
# (tests/boot/test_profile.py checks). trio.testing (27 KB of the image) is
# imported only by trio's hypothesis plugin hook (`_core._run.
# _hypothesis_plugin_setup`, which hypothesis's entry point calls; hypothesis
# is not in the artifact); trio's own package leaves it out at run time.
NOT_FOLLOWED = ("backports.zstd._shutil", "trio.testing")
_MODULE_SUFFIXES = (".py", ".pyc", ".so")
PROBE_TIMEOUT_S = 300

# How the probe reads a module's imports: functions only, no effects (the tests
# run them in their own interpreter). Run in the pinned interpreter, they
# read the node's facts from it: that binary runs only on Linux x86_64, so its
# sys.platform, os.name, sys.version_info, sys.implementation and
# platform.system() are the node's.
_FOLLOW = r"""
import ast, importlib, importlib.util, operator, os, platform, sys

UNKNOWN = object()
# The node's interpreter and system, read from the one running this.
_SYS_FACTS = ("platform", "version_info", "hexversion", "implementation", "byteorder",
              "maxsize")
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt,
            ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge}

def type_checking(t):
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")

class Uname:
    # platform.uname()'s result, of which only the system ("Linux") is the node's.
    def __getitem__(self, i):
        return platform.system() if i == 0 else UNKNOWN

def value(module, t):
    # The value `t` has on every node, or UNKNOWN. Only the interpreter's and
    # system's facts, constants and pure operations on them are known; a
    # name counts only as the module-level binding of the module it names
    # (`import sys as _sys` too), read from the executed module.
    g = vars(module)
    if isinstance(t, ast.Constant):
        return t.value
    if type_checking(t):
        return False  # typing.TYPE_CHECKING is False at run time
    if isinstance(t, ast.Tuple):
        items = [value(module, e) for e in t.elts]
        return UNKNOWN if any(i is UNKNOWN for i in items) else tuple(items)
    if isinstance(t, ast.Name):
        return g.get(t.id, UNKNOWN) if isinstance(g.get(t.id), type(sys)) else UNKNOWN
    if isinstance(t, ast.Attribute):
        base = value(module, t.value)
        if base is sys:
            return getattr(sys, t.attr) if t.attr in _SYS_FACTS else (
                sys.modules if t.attr == "modules" else UNKNOWN)
        if base is os:
            return os.name if t.attr == "name" else UNKNOWN
        if base is platform:
            return platform.system if t.attr == "system" else UNKNOWN
        if base is sys.implementation and t.attr == "name":
            return sys.implementation.name
        if base is sys.version_info and t.attr in ("major", "minor"):
            return getattr(sys.version_info, t.attr)
        if isinstance(base, type(sys)) and ours(base):
            # A module's attribute holding platform.uname()'s result.
            # Read from its dict: a package's __getattr__ facade must not run here.
            held = vars(base).get(t.attr)
            return Uname() if isinstance(held, platform.uname_result) else UNKNOWN
        return UNKNOWN
    if isinstance(t, ast.Subscript):
        base, index = value(module, t.value), value(module, t.slice)
        if base is UNKNOWN or index is UNKNOWN or not isinstance(base, (str, tuple, Uname)):
            return UNKNOWN
        try:
            return base[index]
        except Exception:
            return UNKNOWN
    if isinstance(t, ast.Slice):
        parts = [None if p is None else value(module, p) for p in (t.lower, t.upper, t.step)]
        return UNKNOWN if UNKNOWN in parts else slice(*parts)
    if isinstance(t, ast.UnaryOp) and isinstance(t.op, ast.USub):
        v = value(module, t.operand)
        return -v if type(v) is int else UNKNOWN
    if isinstance(t, ast.UnaryOp) and isinstance(t.op, ast.Not):
        v = truth(value(module, t.operand))
        return UNKNOWN if v is UNKNOWN else not v
    if isinstance(t, ast.BoolOp):
        # and: one false operand decides; or: one true one (whatever the others are).
        vs = [truth(value(module, e)) for e in t.values]
        stop = isinstance(t.op, ast.Or)
        if stop in vs:
            return stop
        return UNKNOWN if UNKNOWN in vs else not stop
    if isinstance(t, ast.Compare):
        return compare(module, t)
    if isinstance(t, ast.Call) and not t.keywords:
        if isinstance(t.func, ast.Attribute) and t.func.attr in ("startswith", "endswith"):
            s, args = value(module, t.func.value), [value(module, a) for a in t.args]
            if isinstance(s, str) and args and all(isinstance(a, (str, tuple)) for a in args):
                return getattr(s, t.func.attr)(*args)
        elif value(module, t.func) is platform.system and not t.args:
            return platform.system()
    return UNKNOWN

def truth(v):
    return v if v is UNKNOWN else bool(v) if isinstance(v, (bool, int, str, tuple)) else UNKNOWN

def importable(name):
    try:
        return importlib.util.find_spec(name.split(".")[0]) is not None
    except Exception:
        return True

def compare(module, t):
    left = value(module, t.left)
    for op, right_node in zip(t.ops, t.comparators):
        right = value(module, right_node)
        if isinstance(op, (ast.In, ast.NotIn)) and right is sys.modules:
            # Nothing on the node imports a module the probe cannot even
            # find (sphinx): it is never in sys.modules. One it can find may be.
            if not isinstance(left, str) or importable(left):
                return UNKNOWN
            ok = isinstance(op, ast.NotIn)
        elif type(op) in _COMPARE and left is not UNKNOWN and right is not UNKNOWN and all(
                isinstance(v, (int, str, tuple)) for v in (left, right)):
            try:
                ok = _COMPARE[type(op)](left, right)
            except TypeError:
                return UNKNOWN
        else:
            return UNKNOWN
        if not ok:
            return False
        left = right
    return True

def decided(module, test):
    # True or False where `test` has that value on every node; else None.
    v = truth(value(module, test))
    return None if v is UNKNOWN else v

def ours(m):
    f = getattr(m, "__file__", None) or ""
    return f.startswith(tuple(p + "/" for p in OURS))

OURS = ()  # the probe sets it: the artifact's app and native dir

def absolute(module, node):
    base = node.module or ""
    if node.level:
        parts = module.__name__.split(".")
        parts = parts if hasattr(module, "__path__") else parts[:-1]
        parts = parts[:len(parts) - node.level + 1]
        base = ".".join(parts + ([base] if base else []))
    return base

_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError"}
_PLAIN = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
          ast.Pass)

def resolves(module, node):
    try:
        if isinstance(node, ast.Import):
            for a in node.names:
                importlib.import_module(a.name)
            return True
        base = absolute(module, node)
        target = importlib.import_module(base)
        for a in node.names:
            if a.name == "*" or hasattr(target, a.name):
                continue
            importlib.import_module(base + "." + a.name)
        return True
    except Exception:
        return False

def fallback_unreachable(module, node):
    # `try: <imports> except ImportError: <fallback>` whose imports succeed in
    # this interpreter succeed on the node (same interpreter, same platform):
    # the fallback (trio's cffi waitid for an os without waitid) never runs.
    names = set()
    for h in node.handlers:
        kinds = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
        names |= {getattr(k, "id", None) for k in kinds}
    if not node.handlers or not names <= _IMPORT_ERRORS:
        return False
    if not all(isinstance(s, _PLAIN) and not getattr(s, "decorator_list", ())
               for s in node.body):
        return False
    return all(resolves(module, s) for s in node.body
               if isinstance(s, (ast.Import, ast.ImportFrom)))

def named(module, tree):
    mods, attrs, todo = [], [], [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If):
            taken = decided(module, node.test)
            if taken is not None:  # the other branch never runs on a node
                todo.extend(node.body if taken else node.orelse)
                continue
        if isinstance(node, ast.Try) and fallback_unreachable(module, node):
            todo.extend(node.body + node.orelse + node.finalbody)
            continue
        if isinstance(node, ast.Import):
            mods += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = absolute(module, node)
            mods.append(base)
            for a in node.names:
                mods.append(base + "." + a.name)
                attrs.append((base, a.name))
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"):
            mods.append(node.args[0].value)
        todo.extend(ast.iter_child_nodes(node))
    return mods, attrs

"""

# argv: app (the .pyz), native dir, entry points, NOT_FOLLOWED (JSON). Prints the loaded
# modules' files, relative to app or native dir (JSON list).
_PROBE = _FOLLOW + r"""
import json
app, native = sys.argv[1], sys.argv[2]
OURS = (app, native)
entries = json.loads(sys.argv[3])
not_followed = tuple(json.loads(sys.argv[4]))

def skipped(name):
    return any(name == n or name.startswith(n + ".") for n in not_followed)
sys.path[:0] = [native, app]
sys.dont_write_bytecode = True
import zosnode.cli
for groups, modules in entries:
    for g in groups:
        zosnode.cli.build_parser(only=g)
    for m in modules:
        importlib.import_module(m)

def try_import(name):
    try:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
    except Exception:
        pass  # another platform's module, or a name that is an attribute

# A package whose __init__ has not run (registered bare, as a package facade
# may be) is followed only once something runs it: until then its __init__'s
# imports are not the node's.
_SPEC = {"__name__", "__doc__", "__package__", "__loader__", "__spec__", "__path__",
         "__file__", "__cached__", "__getattr__", "__builtins__"}

def executed(m):
    return any(k not in _SPEC and not isinstance(v, type(sys)) for k, v in vars(m).items())

done = set()
while True:
    new = [n for n, m in list(sys.modules.items())
           if m and n not in done and ours(m) and executed(m)]
    if not new:
        break
    for name in new:
        done.add(name)
        module = sys.modules[name]
        try:
            source = module.__loader__.get_source(name)
        except Exception:
            source = None
        if not source:
            continue
        mods, attrs = named(module, ast.parse(source))
        for target in mods:
            if target not in sys.modules and not skipped(target):
                try_import(target)
        for base, attr in attrs:
            package = sys.modules.get(base)
            if package is not None and attr != "*":
                try:
                    getattr(package, attr)
                except Exception:
                    pass
files = sorted({m.__file__ for m in list(sys.modules.values()) if m and ours(m)})
print(json.dumps([f[len(app) + 1:] if f.startswith(app + "/") else
                  "_native/" + f[len(native) + 1:] for f in files]))
"""


def probe(zipapp: bytes, runtime: Path, python: str, loader: str,
          lib_dirs: Iterable[str]) -> list[str]:
    """Artifact members holding the modules the node's entry points can load."""
    with tempfile.TemporaryDirectory(prefix="zosnode-profile-") as tmp:
        app, native = Path(tmp) / "app.pyz", Path(tmp) / "native"
        closure.lay_out(zipapp, app, native)
        proc = closure.run_pinned(
            runtime, python, loader, lib_dirs, _PROBE,
            [str(app), str(native), json.dumps(list(ENTRY_POINTS.values())),
             json.dumps(NOT_FOLLOWED)],
            tmp, PROBE_TIMEOUT_S, "finding the node profile", BuildInputError)
        loaded: list[str] = json.loads(proc.stdout)
    return [*loaded, "__main__.py"]


def distributions(zipapp: bytes) -> dict[str, frozenset[str]]:
    """Each dist-info directory of the artifact -> the names its files live
    under (`_key`), from its RECORD."""
    out: dict[str, frozenset[str]] = {}
    with zipfile.ZipFile(io.BytesIO(zipapp)) as zf:
        for name in zf.namelist():
            head, _, base = name.rpartition("/")
            if base == "RECORD" and head.endswith(".dist-info"):
                paths = (line.split(",", 1)[0] for line in
                         zf.read(name).decode("utf-8", "replace").splitlines())
                prefix = NATIVE_PREFIX if name.startswith(NATIVE_PREFIX) else ""
                out[head] = frozenset(_key(prefix + p) for p in paths
                                      if p and ".dist-info/" not in p)
    return out


def _key(member: str) -> str:
    """The top-level name a member lives under: its first directory, or a
    top-level file's name up to its first dot (`_cffi_backend`)."""
    rel = member.removeprefix(NATIVE_PREFIX)
    head, sep, _ = rel.partition("/")
    return head if sep else rel.split(".", 1)[0]


def select(names: Iterable[str], loaded: Iterable[str],
           dists: dict[str, frozenset[str]] | None = None) -> list[str]:
    """The members of the profile: loaded modules (as the importer finds them)
    and the data files beside them. Given `dists` (`distributions`), a
    dist-info goes only with a module of its distribution, and without RECORD."""
    names = set(names)
    keep: set[str] = set()
    for member in loaded:
        if member.endswith(".py") and member + "c" in names:
            keep.add(member + "c")  # a source file loaded: the pyc beside it serves
        else:
            keep.add(member)
    # A data file goes where a module of its directory goes (pyfuse3's
    # py.typed, the trust anchor); metadata outside any package (dist-info)
    # always.
    dirs = {posixpath.dirname(n) for n in keep}
    tops = {_top(n) for n in names if n.endswith(_MODULE_SUFFIXES)}
    keep.update(n for n in names if not n.endswith(_MODULE_SUFFIXES)
                and (posixpath.dirname(n) in dirs or _top(n) not in tops))
    if dists is not None:
        # RECORD (the wheel's file list and hashes) is read only by
        # importlib.metadata.files(), which nothing on a node calls, and the
        # artifact's stripped natives no longer match it; a distribution none
        # of whose modules is on the node (pycparser, pyfastcdc) has no metadata there.
        held = {_key(n) for n in keep if n.endswith(_MODULE_SUFFIXES)}
        for dist, under in dists.items():
            if under & held:
                keep.discard(dist + "/RECORD")
            else:
                keep = {n for n in keep if not n.startswith(dist + "/")}
    return sorted(keep & names)


def _top(member: str) -> str:
    """The top-level directory of a member ("" at the root)."""
    head, _, rest = member.removeprefix(NATIVE_PREFIX).partition("/")
    return head if rest else ""


def write(zipapp: bytes, members: Iterable[str]) -> bytes:
    """The profile as a zipapp: the artifact's shebang, then `members` stored
    uncompressed (the initramfs is compressed as a whole) with their bytes and
    time stamps."""
    shebang = zipapp.split(b"\n", 1)[0] + b"\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(zipapp)) as src, zipfile.ZipFile(buf, "w") as out:
        for name in sorted(members):
            old = src.getinfo(name)
            info = zipfile.ZipInfo(name, date_time=old.date_time)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = old.external_attr
            out.writestr(info, src.read(name))
    return shebang + buf.getvalue()


def describe(zipapp: bytes, profile: bytes) -> dict[str, object]:
    """What `initramfs.json` records: the artifact and each profile file's sha256."""
    with zipfile.ZipFile(io.BytesIO(profile)) as zf:
        files = {n: hashlib.sha256(zf.read(n)).hexdigest() for n in sorted(zf.namelist())}
    return {"artifact_sha256": hashlib.sha256(zipapp).hexdigest(),
            "profile_sha256": hashlib.sha256(profile).hexdigest(), "files": files}


def check(profile: bytes, zipapp: bytes) -> list[str]:
    """What makes `profile` not a node profile of `zipapp` (empty: it is one)."""
    problems = []
    if profile.split(b"\n", 1)[0] != zipapp.split(b"\n", 1)[0]:
        problems.append("the shebangs differ")
    with zipfile.ZipFile(io.BytesIO(profile)) as p, zipfile.ZipFile(io.BytesIO(zipapp)) as a:
        whole = set(a.namelist())
        for name in p.namelist():
            if name not in whole:
                problems.append(f"{name} is not in the artifact")
            elif p.read(name) != a.read(name):
                problems.append(f"{name} differs from the artifact's")
    return problems
