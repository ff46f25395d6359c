"""Shared shape of a subcommand group: `zosnode GROUP COMMAND ...`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

Handler = Callable[[argparse.Namespace], int]


def add_group(
    sub: Any, name: str, help_text: str
) -> tuple[argparse.ArgumentParser, Any]:
    """Add a group parser and return it with the subparsers for its commands."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help_text, description=help_text
    )
    parser.set_defaults(group_parser=parser, handler=None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser, commands


def add_command(
    commands: Any, name: str, help_text: str, handler: Handler
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help_text, description=help_text
    )
    parser.set_defaults(handler=handler)
    return parser
