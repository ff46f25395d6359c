"""`zosnode flist`: build, inspect, read, mount and extract flists.

Commands that work on a local block store live in `flist_local`; those that
fetch from hubs (mount, remote extract) in `flist_remote`.
"""

from __future__ import annotations

from typing import Any

from zosnode.cli.group import add_group

HELP = "build, inspect, read, mount and extract flists (content-addressed images)"


def register(sub: Any) -> None:
    _, commands = add_group(sub, "flist", HELP)
    from zosnode.cli import flist_local, flist_remote

    flist_local.register(commands)
    flist_remote.register(commands)
