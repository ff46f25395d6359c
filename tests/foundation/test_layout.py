"""One spelling of the shared data layout and its ids: `zosnode.layout` (the node's
part) and `zosnode.hub.paths` (tags, releases, boot files: hub and tools only).

The layout's paths and the hub's parser of them (`zosnode.hub.objects`, built
on the layout's names), then a guard: no other module under zosnode/
spells the 64-hex id pattern, a layout path (`blocks/...`, `flists/...`,
`roots/...`, `channels/...`, `tags/...`), a layout folder joined onto a path,
or the object id's hash. The modules are parsed (the AST): docstrings may
show the layout, code may not.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import zosnode
from zosnode import layout
from zosnode.errors import UsageError
from zosnode.hub import objects, paths
from zosnode.hub.objects import ObjectKind
from zosnode.layout import LayoutError

PACKAGE = Path(zosnode.__file__).resolve().parent
THE_MODULE = "layout.py"
ID = "ab" + "c" * 62

# (module path under zosnode/, what) -> why it may. Keep it empty unless a site
# cannot use zosnode.layout; an entry no longer needed fails the test.
ALLOWED: dict[tuple[str, str], str] = {}


# -- the layout -------------------------------------------------------------------------


def test_builders() -> None:
    assert layout.block_path(ID) == f"blocks/ab/{ID}"
    assert layout.flist_path(ID) == f"flists/{ID}"
    assert paths.tag_path("base-os") == "tags/base-os"
    assert layout.root_path(7) == "roots/7.root"
    assert layout.manifest_path("edge-1") == "channels/edge-1/manifest"
    assert paths.release_path("edge-1", 3) == "channels/edge-1/releases/3.manifest"
    assert paths.boot_path("stable", "vmlinuz") == "boot/stable/vmlinuz"
    assert layout.sharded(ID) == f"ab/{ID}"
    assert layout.object_id(b"") == (
        "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8")


@pytest.mark.parametrize("build", [
    lambda: layout.block_path("../" + ID[3:]), lambda: layout.block_path(ID.upper()),
    lambda: layout.flist_path(ID + "0"), lambda: paths.tag_path("../x"),
    lambda: paths.tag_path(".hidden"), lambda: layout.root_path(0),
    lambda: layout.root_path(True), lambda: layout.root_path(2**63),
    lambda: layout.manifest_path("Stable"), lambda: layout.manifest_path("a..b"),
    lambda: layout.manifest_path("a/b"), lambda: paths.boot_path("stable", "grub.cfg"),
    lambda: paths.release_path("stable", -1), lambda: layout.check_id(None),  # type: ignore[arg-type]
])
def test_builders_refuse_what_cannot_be_a_path(build: object) -> None:
    with pytest.raises(LayoutError):
        build()  # type: ignore[operator]
    assert issubclass(LayoutError, UsageError)  # the caller's mistake


def test_is_hex_id() -> None:
    assert layout.is_hex_id(ID) and not layout.is_hex_id(ID.upper())
    assert not layout.is_hex_id(ID + "\n") and not layout.is_hex_id(ID[:-1])
    assert not layout.is_hex_id(None) and not layout.is_hex_id(ID.encode())


@pytest.mark.parametrize("path, kind", [
    ("/blocks/ab/" + ID, ObjectKind.BLOCK), ("/flists/" + "f" * 64, ObjectKind.FLIST),
    ("/roots/1.root", ObjectKind.ROOT), ("/roots/12.root", ObjectKind.ROOT),
    ("/tags/base-os", ObjectKind.TAG), ("/boot/stable/initramfs.img", ObjectKind.BOOT),
    ("/channels/stable/manifest", ObjectKind.MANIFEST),
    ("/channels/edge-1/releases/3.manifest", ObjectKind.RELEASE),
    (f"/roots/{2**63 - 1}.root", ObjectKind.ROOT),
])
def test_url_paths_accepted(path: str, kind: ObjectKind) -> None:
    parsed = objects.parse_url_path(path)
    assert parsed is not None and parsed.path == path[1:] and parsed.kind is kind
    immutable = (ObjectKind.BLOCK, ObjectKind.FLIST, ObjectKind.ROOT, ObjectKind.RELEASE)
    assert parsed.kind.immutable == (kind in immutable)


@pytest.mark.parametrize("path", [
    "/blocks/ac/" + "ab" * 32, "/blocks/ab/" + "AB" * 32, "/blocks/ab/" + "ab" * 31,
    "/flists/" + "f" * 65, "/roots/0.root", "/roots/01.root", "/roots/-1.root",
    "/roots/1.root/x", "/channels/../manifest", "/channels/.x/manifest",
    "/channels/Stable/manifest", "/channels/a/releases/1.root", "/blocks/../../etc/passwd",
    "/channels/a/releases/99999999999999999999.manifest", "//flists/" + "f" * 64,
    "flists/" + "f" * 64, "/boot/stable/grub.cfg", "/tags/", "/", "",
    f"/roots/{2**63}.root",
])
def test_url_paths_refused(path: str) -> None:
    assert objects.parse_url_path(path) is None


@given(st.text(alphabet="abcdef0123456789/.-_rotsflibkcnemaSg", max_size=90))
def test_a_parsed_path_is_the_one_its_builder_makes(path: str) -> None:
    # The parser names nothing the builders would not build: one spelling each.
    parsed = objects.parse_path(path)
    if parsed is not None:
        assert parsed.path == path


@given(st.binary(min_size=32, max_size=32), st.integers(1, 2**63 - 1),
       st.from_regex(r"[a-z0-9][a-z0-9._-]{0,63}", fullmatch=True))
def test_every_built_path_parses_back(digest: bytes, version: int, channel: str) -> None:
    oid = digest.hex()
    if ".." in channel:
        return
    for path, kind in ((layout.block_path(oid), ObjectKind.BLOCK),
                       (layout.flist_path(oid), ObjectKind.FLIST),
                       (layout.root_path(version), ObjectKind.ROOT),
                       (layout.manifest_path(channel), ObjectKind.MANIFEST),
                       (paths.release_path(channel, version), ObjectKind.RELEASE)):
        parsed = objects.parse_path(path)
        assert parsed is not None and (parsed.kind, parsed.path) == (kind, path)
    release = objects.parse_path(paths.release_path(channel, version))
    assert release is not None and (release.channel, release.version) == (channel, version)
    assert objects.root_version(f"{version}.root") == version
    assert objects.release_version(f"{version}.manifest") == version


# -- the guard --------------------------------------------------------------------------

# A character class with a-f followed by {64}: the 64-hex pattern, however spelled.
_HEX_PATTERN = re.compile(r"\[[^\]]*a-f[^\]]*\]\{64\}")
# A layout path in a string: `blocks/...` at its start or after a slash (the
# hub's API routes, /api/v1/..., are names of their own).
_PATH = re.compile(r"(?:^|/)(?:blocks|flists|roots|channels|tags)/")
_API = "/api/"
_FOLDERS = frozenset({"blocks", "flists", "roots", "channels", "tags"})
_JOINS = frozenset({"join", "joinpath"})


def _docstrings(tree: ast.Module) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def _folder(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value in _FOLDERS


def scan(source: str) -> list[tuple[int, str]]:
    """(line, what) for every spelling of the layout or its ids outside zosnode.layout."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if _HEX_PATTERN.search(node.value):
                found.append((node.lineno, f"the 64-hex pattern {node.value[:40]!r}"))
            if _PATH.search(node.value) and not node.value.startswith(_API):
                found.append((node.lineno, f"a layout path {node.value[:40]!r}"))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and (
                _folder(node.left) or _folder(node.right)):
            found.append((node.lineno, f"a layout folder joined: {ast.unparse(node)[:60]}"))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in _JOINS and any(_folder(a) for a in node.args):
                found.append((node.lineno, f"a layout folder joined: {ast.unparse(node)[:60]}"))
            # blake2b(..., digest_size=32).hexdigest(): the object id, by hand.
            if name == "hexdigest" and isinstance(func, ast.Attribute) \
                    and isinstance(func.value, ast.Call):
                inner = func.value
                inner_name = (inner.func.attr if isinstance(inner.func, ast.Attribute)
                              else getattr(inner.func, "id", ""))
                if inner_name == "blake2b" and any(
                        k.arg == "digest_size" and isinstance(k.value, ast.Constant)
                        and k.value.value == 32 for k in inner.keywords):
                    found.append((node.lineno, "the object id hashed by hand"))
    return found


def test_no_module_spells_the_layout_but_the_layout() -> None:
    found = []
    seen_allowed = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == THE_MODULE:
            continue
        for line, what in scan(path.read_text()):
            key = (rel, what)
            if key in ALLOWED:
                seen_allowed.add(key)
                continue
            found.append(f"zosnode/{rel}:{line}: {what}")
    assert not found, (
        "build layout paths and check ids with zosnode.layout (block_path, flist_path, "
        "root_path, manifest_path, ..., is_hex_id, object_id) or zosnode.hub.paths "
        "(tag_path, release_path, boot_path), or extend them:\n  "
        + "\n  ".join(found))
    stale = set(ALLOWED) - seen_allowed
    assert not stale, f"allow-list entries no longer needed: {sorted(stale)}"


@pytest.mark.parametrize("source", [
    "import re\nID = re.compile(r'[0-9a-f]{64}')\n",
    "import re\nok = re.fullmatch('[a-f0-9]{64}', x)\n",
    "def p(b):\n    return f'blocks/{b[:2]}/{b}'\n",
    "def p(hub, c):\n    return f'{hub}/channels/{c}/manifest'\n",
    "def p(v):\n    return 'roots/' + str(v) + '.root'\n",
    "def p(root, b):\n    return root / 'blocks' / b[:2] / b\n",
    "import os\ndef p(root):\n    return os.path.join(root, 'flists')\n",
    "import hashlib\ndef i(d):\n    return hashlib.blake2b(d, digest_size=32).hexdigest()\n",
])
def test_the_scan_finds_hand_spelled_layout(source: str) -> None:
    assert scan(source), source


@pytest.mark.parametrize("source", [
    '"""A module.\n\n    blocks/<id[:2]>/<id>   stored block bytes\n"""\n',
    "def f():\n    '''Reads flists/<id> from [0-9a-f]{64} ids.'''\n",
    "HELP = 'the hub data directory (blocks/, flists/, roots/, channels/)'\n",
    "ISO = 'boot/grub/grub.cfg'\n",
    "ROUTE = '/api/v1/channels/releases'\n",
    "def f(d):\n    return d['blocks']\n",
    "import hashlib\ndef tag(d):\n    return hashlib.blake2b(d, digest_size=16).hexdigest()\n",
    "from zosnode import layout\ndef p(root, b):\n    return root / layout.block_path(b)\n",
])
def test_the_scan_leaves_other_strings_alone(source: str) -> None:
    assert scan(source) == [], source
