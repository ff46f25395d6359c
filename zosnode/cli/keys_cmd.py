"""`zosnode keys`: generate and show signing keys.

Keys are made and used offline; nothing here touches the network.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from zosnode.cli.group import add_command, add_group
from zosnode.trust import keyfile
from zosnode.trust.signing import key_id


def register(sub: Any) -> None:
    _, commands = add_group(sub, "keys", "generate and show signing keys")
    p = add_command(
        commands, "generate",
        "write a new ed25519 private key (mode 0600, never overwrites) and print its key id",
        run_generate,
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="private key file to create")
    p = add_command(commands, "show", "print the public key id of a private key file", run_show)
    p.add_argument("key", type=Path, help="private key file")


def run_generate(args: argparse.Namespace) -> int:
    key = keyfile.generate(args.output)
    print(key_id(key))
    return 0


def run_show(args: argparse.Namespace) -> int:
    print(keyfile.public_id(args.key))
    return 0
