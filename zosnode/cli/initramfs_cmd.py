"""`zosnode initramfs`: build the node's initramfs, and list one."""

from __future__ import annotations

import argparse
import json
import os
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from zosnode.cli.group import add_command, add_group
from zosnode.errors import UserError


def register(sub: Any) -> None:
    _, commands = add_group(sub, "initramfs", "build the node's initramfs")
    p = add_command(commands, "build", "build initramfs.img and vmlinuz from pinned packages",
                    _build)
    p.add_argument("--zipapp", type=Path, default=Path("dist/zosnode.pyz"),
                   help="the artifact to run as /init (built with --python /usr/bin/python3.11)")
    p.add_argument("-o", "--out", type=Path, default=Path("dist/boot"),
                   help="output directory (initramfs.img, vmlinuz, initramfs.json)")
    p.add_argument("--lock", type=Path, default=Path("initramfs/packages.lock"))
    p.add_argument("--modules", type=Path, default=Path("initramfs/modules.list"))
    p.add_argument("--cache", type=Path, default=Path("work/cache"),
                   help="where downloaded .debs are kept")
    p.add_argument("--compression", default=None,
                   help="gzip, xz, zstd or none (default: the measured choice)")
    p.add_argument("--mtime", type=int, default=None,
                   help="time stamp of every member (default SOURCE_DATE_EPOCH or 0)")
    p = add_command(commands, "list", "list an initramfs and check it for shells", _list)
    p.add_argument("image", type=Path)
    p.add_argument("--artifact", type=Path,
                   help="also check that /init is this artifact's node profile (each file "
                        "the artifact's bytes)")


def _build(args: argparse.Namespace) -> int:
    from zosnode.atomicfile import write_atomic
    from zosnode.bootmedia import compression, initramfs

    mtime = args.mtime
    if mtime is None:
        env = os.environ.get("SOURCE_DATE_EPOCH", "0")
        if not env.isdigit():
            raise UserError(f"SOURCE_DATE_EPOCH={env!r} is not a whole number")
        mtime = int(env)
    method = args.compression or compression.DEFAULT
    result = initramfs.build(initramfs.Inputs(
        lock=args.lock, modules_list=args.modules, zipapp=args.zipapp, cache=args.cache,
        compression=method, mtime=mtime))
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "initramfs.img", result.image)
    write_atomic(args.out / "vmlinuz", result.kernel)
    info = result.info(method)
    write_atomic(args.out / "initramfs.json",
                 json.dumps(info, indent=1, sort_keys=True).encode() + b"\n")
    print(f"{args.out / 'initramfs.img'}  {len(result.image)} bytes ({method}), "
          f"{result.unpacked_size} unpacked, {result.members} members, "
          f"kernel {result.kernel_version}, {len(result.modules)} modules")
    return 0


def _list(args: argparse.Namespace) -> int:
    from zosnode.bootmedia import cpio
    from zosnode.bootmedia.compression import decompress
    from zosnode.bootmedia.errors import FormatError
    from zosnode.bootmedia.initramfs import forbidden_members, part_sizes

    try:
        data = args.image.read_bytes()
    except OSError as exc:
        raise UserError(f"{args.image}: {exc.strerror}") from exc
    try:
        entries = cpio.decode(decompress(data))
    except FormatError as exc:
        raise UserError(f"{args.image}: not an initramfs: {exc}") from exc
    for e in entries:
        extra = f" -> {e.target}" if e.target else ""
        extra += f" {e.rdev[0]},{e.rdev[1]}" if e.kind in (cpio.Kind.CHAR, cpio.Kind.BLOCK) else ""
        print(f"{e.mode:07o} {len(e.data):>9} {e.path}{extra}")
    print(f"{len(data)} bytes compressed, {sum(len(e.data) for e in entries)} in "
          f"{len(entries)} members; by part (members, bytes, deflated alone):")
    for part, (count, raw, deflated) in part_sizes(entries).items():
        print(f"  {part:<12} {count:>5} {raw:>10} {deflated:>10}")
    bad = forbidden_members(e.path for e in entries)
    if bad:
        print(f"zosnode: forbidden member in the initramfs: {', '.join(bad)}", file=sys.stderr)
        return 1
    if args.artifact is not None:
        return _check_profile(entries, args.artifact)
    return 0


def _check_profile(entries: Iterable[Any], artifact: Path) -> int:
    from zosnode.bootmedia import cpio, profile
    from zosnode.bootmedia.initramfs import NATIVES_DIR, laid_out_natives

    try:
        whole = artifact.read_bytes()
    except OSError as exc:
        raise UserError(f"{artifact}: {exc.strerror}") from exc
    init = next((e.data for e in entries if e.path == "init"), b"")
    try:
        problems = profile.check(init, whole)
    except zipfile.BadZipFile as exc:
        raise UserError(f"/init or {artifact} is not a zip archive: {exc}") from exc
    if problems:
        print(f"zosnode: /init is not a node profile of {artifact}: {problems[0]}",
              file=sys.stderr)
        return 1
    expected = laid_out_natives(init)  # a BuildInputError is the user's, in its own words
    found = {e.path: e for e in entries
             if e.path.startswith(NATIVES_DIR) and e.kind is not cpio.Kind.DIR}
    for path in sorted(expected.keys() | found.keys()):
        if found.get(path) != expected.get(path):
            what = "missing" if path not in found else "not /init's"
            print(f"zosnode: laid-out native {path} is {what}", file=sys.stderr)
            return 1
    print(f"/init: node profile of {artifact}, every file the artifact's; "
          f"{len(found)} natives laid out, each /init's")
    return 0
