"""Commands of `zosnode flist` that work on a local block store (see flist_cmd).

create, inspect, ls, cat, diff, verify, extract. Each resolves an flist from a
file, an id or a tag, builds a FlistView and hands it to a front end in
zosnode.flist. An flist input error reaches `main` on its own (a `UsageError`);
bad bytes and the OS's complaints are about what the user named: one line, exit 2.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import stat
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from zosnode.atomicfile import write_atomic
from zosnode.cli.group import add_command
from zosnode.cli.meter import Meter
from zosnode.errors import UserError
from zosnode.flist.blocks import Compression
from zosnode.flist.errors import FlistDataError
from zosnode.flist.format import MAX_METADATA, Entry, Kind, flist_id
from zosnode.flist.view import FlistView

# Each command imports what only it uses: `flist extract --hub` (flist_remote) registers
# beside these, and the builder, diff and store modules cost it a tenth of its start.
if TYPE_CHECKING:
    from zosnode.flist.pack import BuildStats
    from zosnode.flist.store import LocalStore

_COMPRESSIONS = {c.name.lower(): c for c in Compression}


def _user_errors(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    @functools.wraps(fn)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except FlistDataError as exc:
            raise UserError(str(exc)) from exc
        except OSError as exc:
            # Every path these commands touch is one the user named (a store,
            # a source, a target), so the OS's complaint is about their input.
            where = exc.filename if exc.filename is not None else "a file"
            raise UserError(f"{where}: {exc.strerror or exc}") from exc

    return wrapper


def _store(args: argparse.Namespace, required: bool = True) -> LocalStore | None:
    if args.store is None:
        if required:
            raise UserError("--store DIR is required for this command")
        return None
    if not os.path.isdir(args.store):
        raise UserError(f"store {args.store} is not a directory")
    from zosnode.flist.store import LocalStore

    return LocalStore(args.store)


def _load(args: argparse.Namespace, name: str) -> FlistView:
    """An flist named by a file path, or by an id or tag in --store."""
    if os.path.isfile(name):
        with open(name, "rb") as f:
            data = f.read(MAX_METADATA + 1)
    else:
        store = _store(args, required=False)
        if store is None:
            raise UserError(f"{name} is not a file (give --store to look up ids and tags)")
        data = store.resolve(name)
    return FlistView.from_bytes(data)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


# --- create ---------------------------------------------------------------


@_user_errors
def _create(args: argparse.Namespace) -> int:
    from zosnode.flist.builder import build_from
    from zosnode.flist.pack import FINE_FROM, BuildOptions
    from zosnode.flist.store import LocalStore
    from zosnode.flist.writer import encode

    if args.fine_chunks and args.chunk_kib is not None:
        raise UserError("--fine-chunks and --chunk-kib both set the chunk sizes of large "
                        "files: give one")
    store = LocalStore(args.store)
    store.init()
    sizes: dict[str, int] = {}
    fine_from = FINE_FROM if args.fine_chunks else None
    if args.chunk_kib is not None:
        n = args.chunk_kib * 1024
        sizes = {"chunk_size": n} if args.chunking == "fixed" else {
            "cdc_min": n // 4, "cdc_avg": n, "cdc_max": n * 4}
        fine_from = None  # one size for every large file
    options = BuildOptions(
        compression=_COMPRESSIONS[args.compression], encrypt=args.encrypt, level=args.level,
        chunking=args.chunking, cdc_fine_from=fine_from, **sizes,
    )
    meter = Meter.on_stderr()
    meter.phase("create", 0, 0, unit="files")

    def progress(s: BuildStats) -> None:
        meter.update(s.files, s.read_bytes, objects=s.total_files, size=s.total_bytes)

    started = time.monotonic()
    try:
        flist, stats = build_from(
            args.source, store, options, kind=args.type,
            prefetch_paths=[os.fsencode(p) for p in args.prefetch], progress=progress,
        )
    finally:
        meter.finish()
    data = encode(flist)
    fid = store.put_flist(data)
    if args.tag:
        store.set_tag(args.tag, fid)
    if args.output:
        write_atomic_path(args.output, data)
    took = time.monotonic() - started
    for path in stats.skipped:
        print(f"skipped (socket): {path}", file=sys.stderr)
    if args.json:
        print(json.dumps({
            "id": fid, "entries": stats.entries, "files": stats.files,
            "file_bytes": stats.file_bytes, "blocks": stats.blocks,
            "new_blocks": stats.new_blocks, "new_bytes": stats.new_bytes,
            "reused_bytes": stats.reused_bytes, "flist_bytes": len(data),
            "seconds": round(took, 3),
            "bytes_per_second": round(stats.file_bytes / took) if took > 0 else None,
            "skipped": stats.skipped,
        }, sort_keys=True))
        return 0
    print(
        f"{stats.entries} entries, {stats.files} files, {_human(stats.file_bytes)}; "
        f"{stats.blocks} blocks: {stats.new_blocks} new ({_human(stats.new_bytes)}), "
        f"{stats.blocks - stats.new_blocks} reused ({_human(stats.reused_bytes)}); "
        f"{took:.1f} s",
        file=sys.stderr,
    )
    print(fid)
    return 0


def write_atomic_path(path: str, data: bytes) -> None:
    from pathlib import Path

    try:
        write_atomic(Path(path).resolve(), data)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None


# --- inspect, ls, cat -----------------------------------------------------


@_user_errors
def _inspect(args: argparse.Namespace) -> int:
    from zosnode.flist.stats import flist_stats
    from zosnode.flist.writer import encode

    view = _load(args, args.flist)
    s = flist_stats(view.flist)
    data = encode(view.flist)
    print(f"id:            {flist_id(data)}")
    print(f"metadata:      {_human(len(data))}")
    print(f"entries:       {s.entries} ({', '.join(f'{k} {v}' for k, v in s.by_kind.items())})")
    print(f"file bytes:    {s.file_bytes} ({_human(s.file_bytes)}, holes {_human(s.hole_bytes)})")
    print(f"blocks:        {s.blocks} ({s.packed_blocks} shared by several files)")
    print(f"unique bytes:  {s.decoded_bytes} decoded, {s.stored_bytes} stored "
          f"({_human(s.stored_bytes)})")
    print(f"prefetch:      {len(view.flist.prefetch)} blocks")
    for key, value in sorted(view.flist.metadata.items()):
        print(f"meta {key}: {value!r}")
    return 0


def _mode_string(e: Entry) -> str:
    kinds = {Kind.DIR: "d", Kind.REG: "-", Kind.SYMLINK: "l", Kind.CHR: "c",
             Kind.BLK: "b", Kind.FIFO: "p"}
    return kinds[e.kind] + stat.filemode(e.mode)[1:]


def _ls_line(view: FlistView, e: Entry) -> str:
    r = view.resolve(e)
    size = f"{os.major(r.rdev)}, {os.minor(r.rdev)}" if r.kind in (Kind.CHR, Kind.BLK) \
        else str(r.size)
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.mtime_ns // 1_000_000_000))
    name = os.fsdecode(e.name) if e.parent is not None else "."
    line = f"{_mode_string(r)} {view.nlink(e):>3} {r.uid:>5} {r.gid:>5} {size:>10} {when} {name}"
    if r.kind is Kind.SYMLINK:
        line += f" -> {os.fsdecode(r.target)}"
    return line


@_user_errors
def _ls(args: argparse.Namespace) -> int:
    from zosnode.flist.browse import lookup

    view = _load(args, args.flist)
    entry = lookup(view, args.path)
    entries = view.children(entry) if entry.kind is Kind.DIR else [entry]
    for e in entries:
        print(_ls_line(view, e) if args.long else os.fsdecode(e.name))
    return 0


@_user_errors
def _cat(args: argparse.Namespace) -> int:
    from zosnode.flist.browse import follow, read_range
    from zosnode.flist.extract import BlockReader

    view = _load(args, args.flist)
    store = _store(args)
    assert store is not None
    entry = view.resolve(follow(view, args.path))
    if entry.kind is not Kind.REG:
        raise UserError(f"{args.path} is not a regular file")
    reader = BlockReader(store)
    out = sys.stdout.buffer
    step = 1 << 20
    for offset in range(0, entry.size, step):
        out.write(read_range(reader, view, entry, offset, step))
    out.flush()
    return 0


# --- diff, verify, extract ------------------------------------------------


@_user_errors
def _diff(args: argparse.Namespace) -> int:
    from zosnode.flist.diff import diff

    a = _load(args, args.a)
    b = _load(args, args.b)
    d = diff(a, b)
    for p in d.added:
        print(f"+ {os.fsdecode(p)}")
    for p in d.removed:
        print(f"- {os.fsdecode(p)}")
    for p, what in d.changed:
        print(f"~ {os.fsdecode(p)} ({what})")
    print(
        f"{len(d.added)} added, {len(d.removed)} removed, {len(d.changed)} changed; "
        f"a node holding A fetches {d.fetch_blocks} blocks, {d.fetch_bytes} bytes "
        f"({_human(d.fetch_bytes)}) for B",
        file=sys.stderr,
    )
    return 0


@_user_errors
def _verify(args: argparse.Namespace) -> int:
    from zosnode.flist.verify import verify

    view = _load(args, args.flist)
    store = _store(args)
    assert store is not None
    report = verify(view.flist, store)
    for bid, problem in report.problems:
        print(f"{bid}: {problem}")
    print(
        f"{report.checked} blocks checked, {len(report.problems)} bad or missing",
        file=sys.stderr,
    )
    if report.problems:
        raise UserError(f"{len(report.problems)} of {report.checked} blocks are bad or missing")
    return 0


@_user_errors
def _extract(args: argparse.Namespace) -> int:
    from zosnode.flist.extract import extract

    view = _load(args, args.flist)
    store = _store(args)
    assert store is not None
    meter = Meter.on_stderr()
    meter.phase("extract", 0, 0)
    skipped: list[str] = []
    started = time.monotonic()
    try:
        written = extract(
            view, store, args.target, skipped=skipped,
            progress=lambda done, total: meter.update(0, done, size=total),
        )
    finally:
        meter.finish()
    extract_summary(args, len(view.entries), written, skipped, time.monotonic() - started)
    return 0


def extract_summary(args: argparse.Namespace, entries: int, written: int,
                     skipped: list[str], took: float) -> None:
    """The end of `flist extract` (local or from hubs): one line, or --json on stdout."""
    for what in skipped:
        print(f"skipped (needs root): {what}", file=sys.stderr)
    if getattr(args, "json", False):
        print(json.dumps({
            "target": args.target, "entries": entries - len(skipped), "bytes": written,
            "seconds": round(took, 3),
            "bytes_per_second": round(written / took) if took > 0 else None,
            "skipped": skipped,
        }, sort_keys=True))
        return
    print(f"extracted {entries - len(skipped)} entries, {_human(written)} into {args.target}"
          f" in {took:.1f} s", file=sys.stderr)


def register(commands: Any) -> None:
    p = add_command(commands, "create", "build an flist from a directory, tarball or OCI image",
                    _create)
    p.add_argument("source", help="a directory, a tar/tar.gz/tar.xz, an OCI layout or docker save")
    p.add_argument("--store", required=True, help="the block store directory (created if absent)")
    p.add_argument("--tag", help="also point tags/NAME at the new flist")
    p.add_argument("--type", choices=("auto", "dir", "tar", "oci"), default="auto")
    p.add_argument("--compression", choices=sorted(_COMPRESSIONS), default="zstd")
    p.add_argument("--level", type=int, default=None,
                   help="compression level (default: the codec's measured one, zstd 3)")
    p.add_argument("--chunking", choices=("cdc", "fixed"), default="cdc",
                   help="large files cut by content (default) or at fixed 1 MiB offsets")
    p.add_argument("--chunk-kib", type=int, metavar="KIB",
                   help="large files' chunk size: the content-defined target (min a quarter, "
                        "max four times; default 1024), the same for every large file; "
                        "or the fixed size")
    p.add_argument("--fine-chunks", action="store_true",
                   help="cut files of 64 MiB to 4 GiB by content at 8 / 48 / 256 KiB, for "
                        "images shipped again after small edits: an edit costs a node about "
                        "casync's bytes, reading the file about 20 times the requests")
    p.add_argument("--json", action="store_true",
                   help="print a JSON summary on stdout instead of the id")
    p.add_argument("--encrypt", action="store_true",
                   help="convergent encryption: stores learn nothing from the blocks")
    p.add_argument("--prefetch", action="append", default=[], metavar="PATH",
                   help="image path whose blocks a node should fetch first (repeatable)")
    p.add_argument("-o", "--output", help="also write the encoded flist to this file")

    p = add_command(commands, "inspect", "show what an flist holds", _inspect)
    p.add_argument("flist", help="an flist file, or an id or tag in --store")
    p.add_argument("--store")

    p = add_command(commands, "ls", "list a directory of an flist", _ls)
    p.add_argument("flist")
    p.add_argument("path", nargs="?", default="/")
    p.add_argument("-l", "--long", action="store_true")
    p.add_argument("--store")

    p = add_command(commands, "cat", "write a file of an flist to stdout", _cat)
    p.add_argument("flist")
    p.add_argument("path")
    p.add_argument("--store", required=True)

    p = add_command(commands, "diff", "what changed from flist A to B, and what B costs", _diff)
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--store")

    p = add_command(commands, "verify", "check every block is present and correct", _verify)
    p.add_argument("flist")
    p.add_argument("--store", required=True)

    p = add_command(commands, "extract", "materialise an flist into an empty directory",
                    _extract)
    p.add_argument("flist")
    p.add_argument("target")
    # Not required by argparse: another block source (--hub) may be added later.
    p.add_argument("--store", help="the local block store to read blocks from")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
