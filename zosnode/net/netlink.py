"""pyroute2's two sockets the node uses, without its facade: `import pyroute2` imports every
protocol it speaks (NDB with sqlite3, IPDB, WireGuard, ...), 62 modules and 5.7 MB of RSS. So the
package is registered without running its `__init__`; a non-module attribute runs it (PEP 562)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

_PACKAGE = "pyroute2"


def _register_package() -> None:
    if _PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        raise ImportError("pyroute2 is not installed")
    package = importlib.util.module_from_spec(spec)  # __path__ set, __init__ not run
    loader = spec.loader

    def facade(name: str) -> Any:
        if importlib.util.find_spec(f"{_PACKAGE}.{name}") is not None:
            return importlib.import_module(f"{_PACKAGE}.{name}")
        del package.__dict__["__getattr__"]
        loader.exec_module(package)
        return getattr(package, name)

    package.__dict__["__getattr__"] = facade
    sys.modules[_PACKAGE] = package


def _module(name: str) -> Any:
    # `name` is spelt whole at each call: the initramfs profile finds the submodules by it.
    _register_package()
    return importlib.import_module(name)


def iproute() -> Any:
    return _module("pyroute2.iproute.linux").IPRoute()


def nftables(family: int) -> Any:
    return _module("pyroute2.nftables.main").NFTables(nfgen_family=family)
