"""`zosnode hub gc | verify | mirror`: the operator's maintenance of a hub's store.

Each shows a progress line on a terminal (`zosnode.cli.meter`), has
`--dry-run` (gc, mirror) and `--json` (a summary on stdout at the end).
The work is in `zosnode.hub.gc`, `.verify` and `.mirror`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import trio

from zosnode.cli.group import add_command
from zosnode.cli.meter import Meter, human_bytes
from zosnode.errors import UserError
from zosnode.hub.gc import GcError, GcPolicy, GcReport, Lock, collect
from zosnode.hub.mirror import mirror
from zosnode.hub.registry import Registry, RegistryError
from zosnode.hub.registry_db import open_backend
from zosnode.hub.s3 import S3Storage
from zosnode.hub.storage import LocalStorage, Storage, StorageError
from zosnode.hub.verify import verify

T = TypeVar("T")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """`90`, `30s`, `10m`, `2h`, `7d` in seconds."""
    found = _DURATION.fullmatch(text.strip())
    if found is None:
        raise UserError(f"--grace {text!r}: give a duration like 30s, 10m, 2h or 7d")
    return float(found.group(1)) * _UNITS[found.group(2)]


def _store_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", metavar="DIR", help="the hub data directory")
    parser.add_argument("--store", metavar="s3://BUCKET[/PREFIX]",
                        help="the hub's S3 bucket instead of DIR")
    parser.add_argument("--s3-endpoint", metavar="URL", help="the S3 endpoint, http://HOST:PORT")
    parser.add_argument("--json", action="store_true", help="print a JSON summary at the end")


def register(commands: Any) -> None:
    gc = add_command(commands, "gc", "delete blocks and flists no retained release needs", _gc)
    _store_args(gc)
    gc.add_argument("--grace", required=True, metavar="DURATION",
                    help="keep every object younger than this (30s, 10m, 2h, 7d)")
    gc.add_argument("--keep", type=int, metavar="N",
                    help="release records kept per channel, newest first (default: all)")
    gc.add_argument("--dry-run", action="store_true", help="say what would go, delete nothing")
    gc.add_argument("--registry", metavar="URL",
                    help="the hubs' registry, whose publish lock gc deletes under: "
                         "postgresql://... or sqlite:PATH (as hub serve; default: "
                         "DIR/.hub/registry.sqlite3)")
    gc.add_argument("--no-lock", action="store_true",
                    help="delete without the publish lock: only safe when no hub is "
                         "publishing (needed with --store and no --registry)")

    ver = add_command(commands, "verify", "re-hash every stored object; exit 1 if any is bad",
                      _verify)
    _store_args(ver)

    mir = add_command(commands, "mirror", "copy to a mirror directory or bucket what it lacks",
                      _mirror)
    _store_args(mir)
    mir.add_argument("--to", required=True, metavar="DIR|s3://BUCKET[/PREFIX]")
    mir.add_argument("--to-s3-endpoint", metavar="URL",
                     help="the target bucket's endpoint (default: --s3-endpoint)")
    mir.add_argument("--parallel", type=int, default=8, metavar="N")
    mir.add_argument("--dry-run", action="store_true", help="say what would be copied")


def open_storage(args: argparse.Namespace) -> Storage:
    if args.store:
        if args.data:
            raise UserError("give --data DIR or --store s3://..., not both")
        if not args.s3_endpoint:
            raise UserError("--store s3://... needs --s3-endpoint http://HOST:PORT")
        return S3Storage.from_url(args.store, args.s3_endpoint)
    if not args.data:
        raise UserError("give --data DIR or --store s3://BUCKET[/PREFIX]")
    if not os.path.isdir(args.data):
        raise UserError(f"--data {args.data}: no such directory")
    return LocalStorage(args.data)


def _target(args: argparse.Namespace) -> Storage:
    if args.to.startswith("s3://"):
        endpoint = args.to_s3_endpoint or args.s3_endpoint
        if not endpoint:
            raise UserError("--to s3://... needs --to-s3-endpoint (or --s3-endpoint)")
        return S3Storage.from_url(args.to, endpoint)
    try:
        os.makedirs(args.to, mode=0o755, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--to {args.to}: {exc.strerror}") from None
    return LocalStorage(args.to)


def _run(storages: list[Storage], work: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        try:
            return await work()
        finally:
            for s in storages:
                await s.aclose()

    try:
        return trio.run(main)
    except StorageError as exc:
        # The store the user named cannot be read or written: one line.
        raise UserError(str(exc)) from None
    except BaseExceptionGroup as group:
        # A parallel copy's worker failed: the same, from inside the nursery.
        found = group.subgroup(lambda e: isinstance(e, StorageError))
        if found is not None:
            raise UserError(str(_first(found))) from None
        raise


def _first(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _summary(args: argparse.Namespace, report: object, text: str) -> None:
    if args.json:
        assert dataclasses.is_dataclass(report) and not isinstance(report, type)
        doc = dataclasses.asdict(report)
        if "problems" in doc:
            doc["problems"] = [f"{p['key']}: {p['what']}" for p in doc["problems"]]
        print(json.dumps(doc, sort_keys=True))
    else:
        print(text, file=sys.stderr)


def _rate(size: int, seconds: float) -> str:
    return f"{human_bytes(size / max(seconds, 1e-6))}/s"


# Fault injection for the race tests (tests/hub/test_maintenance.py): gc writes
# FILE.marked after its mark, then waits (at most 120 s) for FILE to exist;
# with HOLD_IN_ENV set to a phase (releases, flists, blocks) it does so in
# that phase's first delete batch instead, holding the publish lock.
HOLD_ENV = "ZOSNODE_TEST_GC_HOLD"
HOLD_IN_ENV = "ZOSNODE_TEST_GC_HOLD_IN"
# How long gc waits for a publication to release the publish lock.
GC_LOCK_WAIT_S = 300.0


async def _no_hold() -> None:
    return None


async def _hold(path: str) -> None:
    with open(path + ".marked", "w"):
        pass
    with trio.move_on_after(120):
        while not os.path.exists(path):
            await trio.sleep(0.05)


def _gc_registry(args: argparse.Namespace) -> Registry | None:
    """The registry whose publish lock gc deletes under; None: no lock."""
    if args.no_lock:
        if args.registry:
            raise UserError("give --registry URL or --no-lock, not both")
        return None
    if args.registry is None and args.dry_run:
        return None  # deletes nothing: no publication to keep out
    if args.registry is None and not args.data:
        raise UserError("hub gc --store: give --registry URL (the hubs' registry: gc "
                        "deletes under its publish lock), or --no-lock if no hub publishes")
    return Registry(open_backend(args.registry, args.data))


def _gc(args: argparse.Namespace) -> int:
    grace = parse_duration(args.grace)
    try:
        policy = GcPolicy(grace_s=grace, keep=args.keep)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    storage = open_storage(args)
    registry = _gc_registry(args)
    lock: Lock | None = None
    if registry is not None:
        held = registry

        def lock() -> AbstractAsyncContextManager[None]:
            return held.publish_lock(GC_LOCK_WAIT_S)

    meter = Meter()
    hold = os.environ.get(HOLD_ENV)
    hold_in = os.environ.get(HOLD_IN_ENV)

    async def in_batch(phase: str) -> None:
        nonlocal hold_in
        if hold and phase == hold_in:
            hold_in = None  # the first batch of that phase only
            await _hold(hold)

    async def work() -> GcReport:
        try:
            return await collect(
                storage, policy, dry_run=args.dry_run, progress=meter, lock=lock,
                after_mark=(lambda: _hold(hold)) if hold and not hold_in else _no_hold,
                in_batch=in_batch)
        finally:
            if registry is not None:
                await registry.aclose()

    try:
        report = _run([storage], work)
    except GcError as exc:
        raise UserError(str(exc)) from None
    except RegistryError as exc:
        # The lock cannot be had (database down, a publication holding it
        # too long): nothing is half-done, gc can simply run again.
        raise UserError(f"hub gc: publish lock: {exc}") from None
    meter.finish()
    verb = "would delete" if args.dry_run else "deleted"
    for key in report.lost:
        print(f"{key}: deleted while a publish began to use it again: re-run hub push",
              file=sys.stderr)
    live, gone = report.live, report.deleted
    _summary(args, report,
             f"{report.objects_scanned} objects ({human_bytes(report.bytes_scanned)}) in "
             f"{report.seconds:.1f} s; live {live['flists']} flists, {live['blocks']} "
             f"blocks; {verb} {gone['blocks']} blocks, {gone['flists']} flists, "
             f"{gone['releases']} release records ({human_bytes(report.bytes_freed)}); "
             f"kept {report.kept_young} young, {report.rescued} rescued by the publish guard; "
             f"{report.batches} batch(es)"
             + (f" under the publish lock, longest hold {report.max_hold_s:.2f} s"
                if report.locked else " without the publish lock"))
    return 1 if report.lost else 0


def _verify(args: argparse.Namespace) -> int:
    storage = open_storage(args)
    meter = Meter()
    report = _run([storage], lambda: verify(storage, progress=meter))
    meter.finish()
    if not args.json:
        for p in report.problems:
            print(p.line())
    _summary(args, report,
             f"{report.objects} objects ({human_bytes(report.bytes)}) checked in "
             f"{report.seconds:.1f} s ({_rate(report.bytes, report.seconds)}): "
             f"{len(report.problems)} problem(s); {report.expired_manifests} expired "
             f"manifest(s)")
    return 1 if report.problems else 0


def _mirror(args: argparse.Namespace) -> int:
    source = open_storage(args)
    target = _target(args)
    meter = Meter()
    report = _run([source, target], lambda: mirror(
        source, target, dry_run=args.dry_run, parallel=max(1, args.parallel), progress=meter))
    meter.finish()
    for line in report.refused:
        print(line, file=sys.stderr)
    verb = "would copy" if args.dry_run else "copied"
    _summary(args, report,
             f"{report.objects} objects; {verb} {report.copied} "
             f"({human_bytes(report.bytes_copied)}) in {report.seconds:.1f} s "
             f"({_rate(report.bytes_copied, report.seconds)}); {report.present} already "
             f"there; {len(report.refused)} refused")
    return 1 if report.refused else 0
