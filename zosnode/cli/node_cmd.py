"""`zosnode node`: the node agent's group (`zosnode.agent.main`; a node enters it
through `zosnode.entry` without loading the command line)."""

from __future__ import annotations

from typing import Any

from zosnode.agent.main import HELP, add_arguments, run
from zosnode.cli.group import add_command, add_group


def register(sub: Any) -> None:
    _, commands = add_group(sub, "node", "the node agent (runs as /init)")
    add_arguments(add_command(commands, "run", HELP, run))
