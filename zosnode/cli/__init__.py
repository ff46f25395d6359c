"""The `zosnode` command line: one argparse tree, one error policy.

Each subcommand group lives in its own module under `zosnode.cli` and exposes
`register(subparsers)`; handlers are `def run(args) -> int`. Handlers raise
`UserError` for user mistakes, and a layer's usage error (a `UsageError`) is
one too: `main` turns either into one line and exit 2 (`zosnode.entry.guarded`;
see `zosnode.errors`).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from zosnode import entry
from zosnode.cliparser import CliParser
from zosnode.entry import CHILD_COMMAND, EXIT_USER, NODE_RUN, guarded

# Order is the order shown in --help. Only the group a command line names is
# imported (its module pulls in trio, pyroute2, ...); the others appear in
# --help through these one-line summaries, so `zosnode version` stays cheap.
GROUPS = {
    "flist": "build, inspect, read, mount and extract flists (content-addressed images)",
    "keys": "generate and show signing keys",
    "release": "build, sign and verify release manifests and roots",
    "hub": "run a hub, push to it, list its nodes",
    "node": "the node agent (runs as /init)",
    "bootstrap": "render per-farm boot media",
    "initramfs": "build the node's initramfs",
    "audit": "print the build id, sha256, SBOM and files of an artifact",
    "version": "print the version and build id",
}


def build_parser(only: str | None = None) -> CliParser:
    """The whole tree, or (with `only`) one group in full and the rest as summaries."""
    parser = CliParser(
        prog="zosnode",
        description="A network-booted, stateless, no-shell server node.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show a traceback on any failure"
    )
    sub = parser.add_subparsers(dest="group", metavar="COMMAND", parser_class=CliParser)
    for name, summary in GROUPS.items():
        if only is None or name == only:
            module = importlib.import_module(f"zosnode.cli.{name}_cmd")
            module.register(sub)
        else:
            sub.add_parser(name, help=summary, description=summary)
    return parser


def _named_group(argv: Sequence[str]) -> str:
    """The group a command line asks for, or "" when it names none."""
    for token in argv:
        if not token.startswith("-"):
            return token if token in GROUPS else ""
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    """The whole command line (a node's two commands come in through `zosnode.entry`)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == [CHILD_COMMAND] or args_list[:2] == NODE_RUN:
        return entry.main(args_list)

    def command() -> int:
        parser = build_parser(only=_named_group(args_list))
        args = parser.parse_args(args_list)
        handler = getattr(args, "handler", None)
        if handler is None:
            # A group given without a command: show what it offers.
            target = getattr(args, "group_parser", parser)
            target.print_help(sys.stderr)
            return EXIT_USER
        return int(handler(args) or 0)

    return guarded(command, debug="--debug" in args_list)
