"""`zosnode audit --tcb`: the node's trusted code base, measured by importing it.

The TCB is every module of our own package that a node runs: what `node run`
loads (`zosnode.entry`, the agent and the boot stage it imports by name), what
the FUSE mount child loads (`zosnode _mount-child`), and the artifact's
start-up (`zosnode.artifact.unpack`) that runs before either; `zosnode.entry`
dispatches both by name without loading the command line. Each entry point is
imported in a fresh interpreter, from the artifact (natives activated as its
`__main__` does) or from this source tree. Then every `zosnode` module that a
loaded module names in an import statement, at top level or inside a function
(a lazy import still runs on a node; `if TYPE_CHECKING:` blocks do not), is
imported too, until nothing new appears.

Lines are non-blank lines of source, comments and docstrings included (a
reviewer reads those too).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from zosnode.errors import ZosError

# entry point -> the modules `zosnode.entry` imports by name for it
ENTRY_POINTS: dict[str, tuple[str, ...]] = {
    "node run": ("zosnode.entry", "zosnode.agent.main", "zosnode.agent.boot"),
    "mount child": ("zosnode.entry", "zosnode.mount.child"),
}
TAGS = {"node run": "n", "mount child": "c"}

# Runs in a fresh `python -I`: argv = root (a .pyz or the directory holding the
# zosnode package), modules (JSON). Prints {module: non-blank lines}.
_PROBE = r"""
import ast, importlib, importlib.util, json, os, sys
root, modules = sys.argv[1], json.loads(sys.argv[2])
sys.path.insert(0, root)
if os.path.isfile(root):
    from pathlib import Path
    from zosnode.artifact.unpack import activate
    activate(Path(root))
else:
    import zosnode.artifact.unpack
for m in modules:
    importlib.import_module(m)

def ours(name):
    return name == "zosnode" or name.startswith("zosnode.")

def type_checking(test):
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")

def named(module, tree):
    is_pkg = hasattr(module, "__path__")
    out, todo = [], [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and type_checking(node.test):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.__name__.split(".")
                parts = parts if is_pkg else parts[:-1]
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            out.append(base)
            out += [base + "." + a.name for a in node.names]
        todo.extend(ast.iter_child_nodes(node))
    return [n for n in out if ours(n)]

def exists(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False

lines, done = {}, set()
while True:
    new = [n for n, m in list(sys.modules.items()) if ours(n) and n not in done and m]
    if not new:
        break
    for name in new:
        done.add(name)
        module = sys.modules[name]
        source = module.__loader__.get_source(name)
        lines[name] = sum(1 for line in source.splitlines() if line.strip())
        for target in named(module, ast.parse(source)):
            if target not in sys.modules and exists(target):
                importlib.import_module(target)
print(json.dumps(lines))
"""


class TcbError(ZosError):
    """The entry points could not be imported, so nothing was measured."""


@dataclass(frozen=True)
class Tcb:
    root: str
    modules: dict[str, int]  # module -> non-blank lines
    entry_points: dict[str, frozenset[str]]  # entry point -> its modules

    @property
    def total_lines(self) -> int:
        return sum(self.modules.values())

    def lines_of(self, entry: str) -> int:
        return sum(self.modules[m] for m in self.entry_points[entry])

    def to_json(self) -> dict[str, object]:
        return {
            "root": self.root,
            "counting": "non-blank lines of source",
            "total_lines": self.total_lines,
            "total_modules": len(self.modules),
            "entry_points": {
                e: {"lines": self.lines_of(e), "modules": len(ms)}
                for e, ms in self.entry_points.items()
            },
            "modules": [
                {"module": m, "lines": n,
                 "entry_points": [e for e, ms in self.entry_points.items() if m in ms]}
                for m, n in sorted(self.modules.items(), key=lambda kv: (-kv[1], kv[0]))
            ],
        }


def source_root() -> Path:
    """The directory holding the zosnode package this process runs (or its .pyz)."""
    import zosnode

    archive = getattr(getattr(zosnode.__spec__, "loader", None), "archive", None)
    if archive:
        return Path(archive)
    return Path(zosnode.__file__).resolve().parent.parent


def probe(root: Path, modules: tuple[str, ...]) -> dict[str, int]:
    proc = subprocess.run(
        [sys.executable, "-I", "-c", _PROBE, str(root), json.dumps(modules)],
        capture_output=True, text=True, timeout=120, cwd="/", stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise TcbError(f"importing {', '.join(modules)} from {root} failed: {last}")
    lines: dict[str, int] = json.loads(proc.stdout)
    return lines


def measure(root: Path) -> Tcb:
    modules: dict[str, int] = {}
    entries: dict[str, frozenset[str]] = {}
    for entry, names in ENTRY_POINTS.items():
        found = probe(root, names)
        modules.update(found)
        entries[entry] = frozenset(found)
    return Tcb(str(root), modules, entries)


def render(tcb: Tcb) -> str:
    out = [f"trusted code base: {tcb.total_lines} lines in {len(tcb.modules)} modules "
           "(non-blank lines of the zosnode modules a node imports)"]
    for entry, mods in tcb.entry_points.items():
        out.append(f"  {entry:<12} {tcb.lines_of(entry):>6} lines {len(mods):>4} modules"
                   f"  [{TAGS[entry]}]")
    out.append(f"measured from {tcb.root}")
    for name, lines in sorted(tcb.modules.items(), key=lambda kv: (-kv[1], kv[0])):
        mark = "".join(t for e, t in TAGS.items() if name in tcb.entry_points[e])
        out.append(f"{lines:>6}  {mark:<2}  {name}")
    return "\n".join(out)
