"""pyroute2's two sockets the node uses, without pyroute2's package facade.

`import pyroute2` (or any `pyroute2.x`, which runs the package first) runs a
facade that imports every protocol pyroute2 speaks: NDB with sqlite3, IPDB,
WireGuard, nl80211, plan9, ... On a node that needs rtnetlink and nftables
that is 62 modules and 5.7 MB of RSS for nothing. So the package is
registered without running its `__init__`, and only the two submodules are
imported. Anything that later wants the facade still gets it: a first
attribute that is not a submodule runs the real `__init__` (PEP 562).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType
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


def iproute() -> Any:
    """A new rtnetlink socket (pyroute2's `IPRoute`) in this network namespace."""
    _register_package()
    module: ModuleType = importlib.import_module("pyroute2.iproute.linux")
    return module.IPRoute()


def nftables(family: int) -> Any:
    """A new nftables socket (pyroute2's `NFTables`) for `family`."""
    _register_package()
    module: ModuleType = importlib.import_module("pyroute2.nftables.main")
    return module.NFTables(nfgen_family=family)
