"""Import boundaries: pure cores stay pure, and what a node runs stays small.

In the manner of trio's test_exports: the rules are checked on the code
itself. Two independent methods: an AST walk of every `import` statement
(top level and inside functions; `if TYPE_CHECKING:` blocks excepted),
followed transitively within zosnode, and `zosnode audit --tcb`, which
really imports the node's entry points in a fresh interpreter.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]

# The sans-IO cores (docs/architecture.md): bytes, events and time in as
# arguments, decisions out. `random` and `signal` are allowed: the random draw
# comes from an object passed in, and signal names are a table.
PURE_CORES = (
    "zosnode.canonical",
    "zosnode.net.dhcp_wire", "zosnode.net.dhcp_client", "zosnode.net.lease_check",
    "zosnode.net.arp", "zosnode.net.choose", "zosnode.net.loglimit", "zosnode.net.nlwire",
    "zosnode.trust.verifier", "zosnode.trust.manifest", "zosnode.trust.root",
    "zosnode.trust.envelope", "zosnode.trust.schema",
    "zosnode.flist.format", "zosnode.flist.blocks", "zosnode.flist.view", "zosnode.flist.diff",
    "zosnode.agent.services.machine", "zosnode.agent.services.events",
    "zosnode.agent.services.ring", "zosnode.agent.upgrade", "zosnode.agent.cmdline",
    "zosnode.fetch.health", "zosnode.fetch.backoff",
    "zosnode.cache.lru", "zosnode.cache.entry",
    "zosnode.mount.readahead", "zosnode.mount.protocol",
    "zosnode.wire.heartbeat", "zosnode.wire.heartbeat_verify", "zosnode.wire.publish_auth",
    "zosnode.http.messages", "zosnode.http.semantics", "zosnode.http.requesthead",
    "zosnode.hub.replay", "zosnode.layout", "zosnode.hub.objects", "zosnode.hub.sigv4",
    "zosnode.bootmedia.cpio", "zosnode.bootmedia.ipxe", "zosnode.tpm.codec",
)
IMPURE = frozenset({
    "trio", "socket", "time", "os", "subprocess", "select", "selectors", "threading",
    "asyncio", "ssl", "shutil", "tempfile", "pathlib", "ctypes", "pyfuse3", "pyroute2",
})

# The node's entry points, which `zosnode.entry` dispatches by name: `node run`
# (the agent and the boot stage it imports by name) and the FUSE mount child.
ENTRY_POINTS = {
    "node run": ("zosnode.entry", "zosnode.agent.main", "zosnode.agent.boot"),
    "mount child": ("zosnode.entry", "zosnode.mount.child"),
}
# What a node never runs: the hub, the builders, boot media, release tooling,
# and every other command group.
NEVER_ON_A_NODE = (
    "zosnode.hub", "zosnode.bootmedia", "zosnode.flist.builder", "zosnode.flist.pack",
    "zosnode.flist.source_dir", "zosnode.flist.source_tar", "zosnode.flist.source_oci",
    "zosnode.flist.store", "zosnode.flist.tree", "zosnode.flist.diff", "zosnode.flist.verify",
    "zosnode.flist.writer", "zosnode.flist.browse", "zosnode.flist.cdc",
    "zosnode.trust.release_toml", "zosnode.trust.keyfile", "zosnode.trust.download",
    "zosnode.trust.signing", "zosnode.wire.heartbeat_verify",
    "zosnode.fetch.eager", "zosnode.http.server", "zosnode.http.command",
    "zosnode.cli.flist_cmd", "zosnode.cli.flist_local", "zosnode.cli.flist_remote",
    "zosnode.cli.hub_cmd", "zosnode.cli.release_cmd", "zosnode.cli.keys_cmd",
    "zosnode.cli.bootstrap_cmd", "zosnode.cli.initramfs_cmd", "zosnode.cli.audit_cmd",
    "zosnode.cli.audit_tcb", "zosnode.cli.version_cmd",
    # The command line itself: a node's two commands come in through zosnode.entry.
    "zosnode.cli",
)
# The mount child serves a mount; the agent's own parts are not its business.
NEVER_IN_THE_CHILD = ("zosnode.agent", "zosnode.net", "zosnode.trust", "zosnode.wire",
                      "zosnode.cli.node_cmd", "zosnode.flist.extract")


def _file(module: str) -> Path | None:
    base = TOP.joinpath(*module.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


@cache
def _imports(module: str) -> frozenset[str]:
    """Every module `module` names in an import statement, wherever it stands."""
    path = _file(module)
    assert path is not None, module
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    todo: list[ast.AST] = [ast.parse(path.read_text())]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and _type_checking(node.test):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".") if is_pkg else module.split(".")[:-1]
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names
                       if base.startswith("zosnode") and _file(f"{base}.{a.name}"))
        todo.extend(ast.iter_child_nodes(node))
    return frozenset(out)


def _closure(roots: tuple[str, ...]) -> dict[str, str]:
    """Every zosnode module reachable from `roots`, with the one that first imports it."""
    seen: dict[str, str] = {r: "" for r in roots}
    todo = list(roots)
    while todo:
        module = todo.pop()
        parts = module.split(".")
        wanted = [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages
        wanted += [m for m in _imports(module) if m.split(".")[0] == "zosnode"]
        for target in wanted:
            if target not in seen and _file(target):
                seen[target] = module
                todo.append(target)
    return seen


def _chain(closure: dict[str, str], module: str) -> str:
    out = [module]
    while closure.get(out[-1]):
        out.append(closure[out[-1]])
    return " <- ".join(out)


@pytest.mark.parametrize("core", PURE_CORES)
def test_pure_core_imports_no_io(core: str) -> None:
    assert _file(core) is not None, f"{core} is listed as a pure core but does not exist"
    closure = _closure((core,))
    bad = sorted(
        f"{imp} in {_chain(closure, module)}"
        for module in closure for imp in _imports(module)
        if imp.split(".")[0] in IMPURE
    )
    assert not bad, f"{core} is meant to be sans-IO but imports: {bad}"


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_entry_point_never_imports_workstation_code(entry: str) -> None:
    closure = _closure(ENTRY_POINTS[entry])
    forbidden = NEVER_ON_A_NODE + (NEVER_IN_THE_CHILD if entry == "mount child" else ())
    bad = sorted(_chain(closure, m) for m in closure
                 if any(m == f or m.startswith(f + ".") for f in forbidden))
    assert not bad, f"{entry} reaches: {bad}"


def test_the_check_catches_an_edge() -> None:
    """The walker sees a lazy import inside a function and skips TYPE_CHECKING."""
    closure = _closure(("zosnode.cli",))
    assert "zosnode.errors" in closure
    # zosnode.cli dispatches groups and the child by name (importlib), which
    # the rule allows: one process loads one of them.
    assert "zosnode.cli.hub_cmd" not in closure and "zosnode.mount.child" not in closure
    # A function-level import is seen (record-prefetch imports with_hint lazily).
    assert "zosnode.flist.writer" in _imports("zosnode.cli.flist_remote")
    # The verifier names the anchor only for type checking.
    assert "zosnode.trust.anchor" not in _imports("zosnode.trust.verifier")


# -- zosnode audit --tcb: the same boundary, by really importing ---------------------------


def _tcb(*args: str) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-m", "zosnode", "audit", "--tcb", "--json", *args],
                          cwd=TOP, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report: dict[str, object] = json.loads(proc.stdout)
    return report


def _nonblank(module: str) -> int:
    path = _file(module)
    assert path is not None
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def _check_report(report: dict[str, object]) -> None:
    rows = report["modules"]
    assert isinstance(rows, list)
    by_name = {r["module"]: r for r in rows}
    assert report["total_lines"] == sum(r["lines"] for r in rows)
    assert report["total_modules"] == len(rows)
    entries = report["entry_points"]
    assert isinstance(entries, dict) and set(entries) == {"node run", "mount child"}
    for entry, summary in entries.items():
        mine = [r for r in rows if entry in r["entry_points"]]
        assert summary == {"lines": sum(r["lines"] for r in mine), "modules": len(mine)}
    node = {r["module"] for r in rows if "node run" in r["entry_points"]}
    child = {r["module"] for r in rows if "mount child" in r["entry_points"]}
    assert {"zosnode.agent.boot.node", "zosnode.agent.boot.mounters", "zosnode.net.dhcp_client",
            "zosnode.trust.verifier", "zosnode.mount.protocol", "zosnode.agent.main",
            "zosnode.artifact.unpack"} <= node
    assert {"zosnode.mount.child", "zosnode.mount.service", "zosnode.mount.fs",
            "zosnode.fetch.fetcher", "zosnode.cache.store", "zosnode.http.client",
            "zosnode.flist.view", "zosnode.artifact.unpack"} <= child
    for name in by_name:
        assert not any(name == f or name.startswith(f + ".") for f in NEVER_ON_A_NODE), name
    for name in child:
        assert not any(name == f or name.startswith(f + ".") for f in NEVER_IN_THE_CHILD), name
    # The agent process does not load the FUSE front end (nor pyfuse3 with it).
    assert "zosnode.mount.fs" not in node and "zosnode.mount.child" not in node
    # Lines are non-blank lines of each module's source.
    for name in ("zosnode.mount.protocol", "zosnode.agent.boot.node", "zosnode"):
        assert by_name[name]["lines"] == _nonblank(name)
    total = report["total_lines"]
    assert isinstance(total, int) and 3000 < total < 20000
    print(f"TCB {total} non-blank lines in {len(rows)} modules; "
          + ", ".join(f"{e} {s['lines']}" for e, s in entries.items()))


def test_audit_tcb_lists_what_the_node_imports() -> None:
    report = _tcb()
    assert report["root"] == str(TOP)
    _check_report(report)
    # The real imports agree with the AST walk: nothing loaded that the walk misses.
    walked = set(_closure(ENTRY_POINTS["node run"])) | set(_closure(ENTRY_POINTS["mount child"]))
    walked |= set(_closure(("zosnode.artifact.unpack",)))
    rows = report["modules"]
    assert isinstance(rows, list)
    assert {r["module"] for r in rows} == walked


# Issue 12's bound on what a node runs of ours: a change that adds to the node pays for it.
TCB_CAP = 8000


def test_the_trusted_code_base_stays_within_its_cap() -> None:
    report = _tcb()
    total = report["total_lines"]
    assert isinstance(total, int) and total <= TCB_CAP, (
        f"the trusted code base is {total} lines, over its cap of {TCB_CAP}: cut as much as "
        "was added (`zosnode audit --tcb` lists the modules by size)")


def test_audit_tcb_text_puts_the_total_first() -> None:
    proc = subprocess.run([sys.executable, "-m", "zosnode", "audit", "--tcb"], cwd=TOP,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    first, *rest = proc.stdout.splitlines()
    total = _tcb()["total_lines"]
    assert first.startswith(f"trusted code base: {total} lines in ")
    assert any(line.split()[-1] == "zosnode.mount.child" for line in rest)


def test_audit_tcb_of_an_artifact(artifact: Path, tmp_path: Path) -> None:
    report = _tcb(str(artifact))
    assert report["root"] == str(artifact)
    _check_report(report)
    # The artifact carries this very tree: the same modules.
    here, there = _tcb()["modules"], report["modules"]
    assert isinstance(here, list) and isinstance(there, list)
    assert {r["module"] for r in there} == {r["module"] for r in here}


def test_audit_tcb_of_a_missing_file_is_a_user_mistake(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "zosnode", "audit", "--tcb",
                           str(tmp_path / "nope.pyz")], cwd=TOP, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
