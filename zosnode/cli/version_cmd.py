"""`zosnode version`: the package version and, in an artifact, its build id."""

from __future__ import annotations

import argparse
from typing import Any

import zosnode
from zosnode.artifact.record import running_archive


def register(sub: Any) -> None:
    p = sub.add_parser("version", help="print the version and build id")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    archive = running_archive()
    build = "checkout"
    if archive is not None:
        from zosnode.cli.audit_cmd import read_record

        build = read_record(archive).build_id[:16]
    print(f"zosnode {zosnode.__version__} ({build})")
    return 0
