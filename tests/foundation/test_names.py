"""One name per concept: a public class name means one thing across zosnode/.

Every module is parsed (the AST) for its top-level classes. Two public
classes of one name in different modules are refused unless listed below
with why; private ones (`_Conn`) are each module's own business. The names
issue #12 found doubled stay single.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import zosnode

PACKAGE = Path(zosnode.__file__).resolve().parent

# name -> why the modules that define it may share it. An entry no longer
# needed fails the test.
ALLOWED: dict[str, str] = {
    "Entry": "an entry of the format its module writes (cpio archive, flist)",
    "Tree": "a tree of such entries (cpio archive, flist)",
    "Kind": "the entry types of those formats (cpio, flist)",
    "FormatError": "each format layer's bad-bytes error (boot media, flist), as each "
                   "layer has its own usage error",
    "Node": "the agent's node and a node of an flist tree: left for the agent and "
            "flist areas (noticed in #12)",
    "Probe": "a DHCP ARP probe and a service readiness probe: left for the net area",
    "State": "a DHCP client state and a service state: left for the net area",
    "StateChanged": "events of those two state machines: left for the net area",
    "Refused": "a DHCP event and the trust layer's refusal: left for the net area",
}
# Doubled before #12, one name each now.
ONCE = ("BlockSource", "IntegrityError", "HttpUsageError", "Origin", "Response", "Reply",
        "LayoutError", "StoredBlocks", "WrongCopy")


def _classes() -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef):
                found[node.name].append(rel)
    return found


def test_each_public_class_name_means_one_thing() -> None:
    classes = _classes()
    doubled = {name: where for name, where in classes.items()
               if len(where) > 1 and not name.startswith("_")}
    new = {name: where for name, where in doubled.items() if name not in ALLOWED}
    assert not new, (
        "these class names are defined in several modules; name each concept once "
        f"(or say in ALLOWED why they are one concept): {new}")
    stale = set(ALLOWED) - set(doubled)
    assert not stale, f"allow-list entries no longer needed: {sorted(stale)}"


def test_the_names_issue_12_found_doubled_are_single() -> None:
    classes = _classes()
    for name in ONCE:
        assert len(classes.get(name, [])) <= 1, (name, classes.get(name))
    assert "KeyError_" not in classes  # a builtin's name with a tail: now layout.LayoutError
    assert not (PACKAGE / "hub" / "keys.py").exists()  # storage keys: zosnode/layout.py
    assert not (PACKAGE / "hub" / "httpreq.py").exists()  # one client: zosnode/http/client.py
