"""pyroute2's two sockets the node uses, without two package `__init__`s: `import pyroute2`
imports every protocol it speaks (NDB with sqlite3, IPDB, WireGuard, ...), 62 modules and 5.7 MB
of RSS, and its iprsocket's `from unittest import mock` (one Mock in a class body) would import
unittest's test runner, argparse and difflib. So both packages are registered without running
their `__init__`; a non-module attribute runs it (PEP 562)."""

import importlib
import importlib.util
import sys
from typing import Any

_PACKAGES = ("pyroute2", "unittest")


def _register_package() -> None:
    for name in _PACKAGES:
        if name in sys.modules:
            continue  # registered already, or imported whole (a test runner imports unittest)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            continue  # left to fail at its import
        package = importlib.util.module_from_spec(spec)  # __path__ set, __init__ not run
        package.__dict__["__getattr__"] = _facade(package, name, spec.loader)
        sys.modules[name] = package


def _facade(package: Any, name: str, loader: Any) -> Any:
    def facade(attr: str) -> Any:
        if importlib.util.find_spec(f"{name}.{attr}") is not None:
            return importlib.import_module(f"{name}.{attr}")
        del package.__dict__["__getattr__"]
        loader.exec_module(package)
        return getattr(package, attr)
    return facade


def _module(name: str) -> Any:
    # `name` is spelt whole at each call: the initramfs profile finds the submodules by it.
    _register_package()
    return importlib.import_module(name)


def iproute() -> Any:
    return _module("pyroute2.iproute.linux").IPRoute()


def nftables(family: int) -> Any:
    return _module("pyroute2.nftables.main").NFTables(nfgen_family=family)
