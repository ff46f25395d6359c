"""One way for a usage error to reach the user: it subclasses `zosnode.errors.UsageError`.

Every layer names its "the caller asked for something invalid" error
`...UsageError` (flist and bootmedia say `...InputError`). Each of them must
subclass `UsageError`, which `zosnode.cli.main` reports once as the user's
mistake (one line, exit 2); and no module of the CLI may catch one to raise
the CLI's error in its place. Both are read from the source (the AST), so a
new layer or a new command is checked without being listed here.
"""

from __future__ import annotations

import ast
import builtins
import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio

import zosnode
from zosnode.errors import UsageError, UserError

PACKAGE = Path(zosnode.__file__).resolve().parent
NAMES = ("UsageError", "InputError")


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def _usage_classes() -> list[tuple[str, str]]:
    """(module, class) for every class under zosnode/ named like a usage error."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith(NAMES):
                found.append((_module_name(path), node.name))
    return found


def test_every_layer_usage_error_is_a_usage_error() -> None:
    classes = _usage_classes()
    # The base and at least one for each of trust, fetch, cache, mount, net, wire,
    # http, agent, flist, bootmedia (and more): a scan that finds fewer has stopped looking.
    assert len(classes) >= 12, classes
    wrong = []
    for module, name in classes:
        cls = getattr(importlib.import_module(module), name)
        if not (isinstance(cls, type) and issubclass(cls, UsageError)):
            wrong.append(f"{module}.{name}")
    assert not wrong, (
        "a layer's usage error must also subclass zosnode.errors.UsageError (beside its "
        "layer's base), so that the CLI reports it as the user's mistake:\n  "
        + "\n  ".join(wrong))


# -- no hand translation in the CLI ---------------------------------------------


def _resolve_import(module: str, name: str | None) -> Any:
    if name is None:
        return importlib.import_module(module)
    base = importlib.import_module(module)
    if hasattr(base, name):
        return getattr(base, name)
    return importlib.import_module(f"{module}.{name}")


def _namespace(tree: ast.Module, module: ModuleType | None) -> dict[str, Any]:
    """What the names in a module stand for: its globals and every import in it
    (also those inside functions), then the builtins."""
    names: dict[str, Any] = dict(vars(builtins))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = _resolve_import(alias.name, None)
                else:
                    top = alias.name.split(".")[0]
                    names[top] = _resolve_import(top, None)
                    _resolve_import(alias.name, None)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                names[alias.asname or alias.name] = _resolve_import(node.module, alias.name)
    if module is not None:
        names.update(vars(module))
    return names


def _caught(expr: ast.expr, names: dict[str, Any]) -> list[Any]:
    if isinstance(expr, ast.Tuple):
        return [c for elt in expr.elts for c in _caught(elt, names)]
    if isinstance(expr, ast.Name):
        return [names.get(expr.id, expr.id)]
    if isinstance(expr, ast.Attribute):
        (base,) = _caught(expr.value, names)
        return [getattr(base, expr.attr, expr.attr)]
    return [ast.unparse(expr)]


def _is_usage(caught: Any) -> bool:
    if isinstance(caught, type):
        return issubclass(caught, UsageError)
    # Unresolved: judge by the name, so a renamed import cannot hide one.
    return str(caught).endswith(NAMES)


def scan(source: str, module: ModuleType | None = None) -> list[tuple[int, str]]:
    """(line, what) for every handler of a usage error that raises another error."""
    tree = ast.parse(source)
    names = _namespace(tree, module)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ExceptHandler) or node.type is None:
            continue
        if not any(_is_usage(c) for c in _caught(node.type, names)):
            continue
        for inner in (n for stmt in node.body for n in ast.walk(stmt)):
            if not isinstance(inner, ast.Raise) or inner.exc is None:
                continue  # a bare `raise` lets it through
            if isinstance(inner.exc, ast.Name) and inner.exc.id == node.name:
                continue  # `raise exc`: the same error, through
            found.append((node.lineno, f"except {ast.unparse(node.type)}: "
                                       f"raise {ast.unparse(inner.exc)}"))
    return found


def test_no_command_translates_a_usage_error_by_hand() -> None:
    found = []
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        module = importlib.import_module(_module_name(path))
        for line, what in scan(path.read_text(), module):
            found.append(f"zosnode/cli/{path.name}:{line}: {what}")
    assert not found, (
        "a usage error reaches the user through zosnode.cli.main on its own; let it "
        "through (its message names what it is about):\n  " + "\n  ".join(found))


@pytest.mark.parametrize("source", [
    "from zosnode.trust.errors import TrustUsageError\nfrom zosnode.errors import UserError\n"
    "try:\n    pass\nexcept TrustUsageError as exc:\n    raise UserError(str(exc)) from None\n",
    # Renamed, inside a tuple, through a module attribute, inside a function.
    "from zosnode.fetch.errors import FetchUsageError as Bad\n"
    "def f():\n    try:\n        pass\n    except (OSError, Bad) as exc:\n"
    "        raise RuntimeError(exc)\n",
    "from zosnode.mount import errors\ntry:\n    pass\n"
    "except errors.InvalidFlist as exc:\n    raise _refused(exc)\n",
    "def f():\n    from zosnode.flist.errors import FlistInputError\n    try:\n        pass\n"
    "    except FlistInputError as exc:\n        raise SystemExit(2)\n",
    # A subclass of a usage error is one too; so is one the scan cannot resolve.
    "from zosnode.mount.errors import MountpointUnusable\ntry:\n    pass\n"
    "except MountpointUnusable:\n    raise ValueError('x')\n",
    "try:\n    pass\nexcept SomeUsageError:\n    raise ValueError('x')\n",
])
def test_the_scan_finds_hand_translations(source: str) -> None:
    assert scan(source), source


@pytest.mark.parametrize("source", [
    # Peer errors about a file the user named are the command's to say.
    "from zosnode.trust.errors import Refused\nfrom zosnode.errors import UserError\n"
    "try:\n    pass\nexcept Refused as exc:\n    raise UserError(str(exc))\n",
    # Letting it through, or handling it without raising, is fine.
    "from zosnode.trust.errors import TrustUsageError\ntry:\n    pass\n"
    "except TrustUsageError:\n    raise\n",
    "from zosnode.trust.errors import TrustUsageError\ntry:\n    pass\n"
    "except TrustUsageError as exc:\n    raise exc\n",
    "from zosnode.errors import UsageError\ndef main():\n    try:\n        pass\n"
    "    except UsageError as exc:\n        return 2\n",
    # A layer's whole base is not a usage error.
    "from zosnode.flist.errors import FlistError\ntry:\n    pass\n"
    "except FlistError as exc:\n    raise ValueError(exc)\n",
])
def test_the_scan_leaves_other_handlers_alone(source: str) -> None:
    assert scan(source) == [], source


# -- what the user sees -----------------------------------------------------------


def test_a_layer_usage_error_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import zosnode.cli.version_cmd as version_cmd
    from zosnode.cli import main
    from zosnode.fetch.errors import FetchError, FetchUsageError

    def bad(args: object) -> int:
        raise FetchUsageError("--deadline must be positive")

    monkeypatch.setattr(version_cmd, "run", bad)
    assert issubclass(FetchUsageError, FetchError)  # still in its layer's hierarchy
    assert main(["version"]) == 2
    assert capsys.readouterr().err == "zosnode: error: --deadline must be positive\n"
    # --debug shows where it came from: the layer, not a translation.
    assert main(["--debug", "version"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "FetchUsageError" in err and "in bad" in err


def test_a_usage_error_inside_a_nursery_is_shown_as_itself() -> None:
    from zosnode.cli.flist_remote import _run
    from zosnode.trust.errors import TrustUsageError

    async def main() -> int:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            raise TrustUsageError("k.key: no such key file")

    with pytest.raises(TrustUsageError, match="no such key file"):
        _run(main)


def test_the_cli_error_is_a_usage_error() -> None:
    assert issubclass(UserError, UsageError)
