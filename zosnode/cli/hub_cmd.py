"""`zosnode hub`: run a hub, publish to one, list its nodes."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import trio

from zosnode.cli.group import add_command, add_group
from zosnode.cli.meter import Meter
from zosnode.errors import UsageError, UserError, ZosError
from zosnode.http.client import HttpPeerError, Timeouts
from zosnode.http.command import base_url, run_request
from zosnode.http.server import Limits
from zosnode.hub.push import PushError, push
from zosnode.hub.registry import Registry, RegistryError
from zosnode.hub.registry_db import open_backend
from zosnode.hub.s3 import S3Storage
from zosnode.hub.service import RunningHub, run_hub
from zosnode.hub.storage import LocalStorage, Storage, StorageError
from zosnode.layout import is_hex_id
from zosnode.trust import keyfile


def register(sub: Any) -> None:
    _, commands = add_group(sub, "hub", "run and talk to a hub")

    serve = add_command(commands, "serve", "serve a data directory or bucket over HTTP", _serve)
    serve.add_argument("--data", metavar="DIR",
                       help="the hub data directory (blocks/, flists/, roots/, channels/)")
    serve.add_argument("--store", metavar="s3://BUCKET[/PREFIX]",
                       help="keep objects in an S3 bucket instead of DIR")
    serve.add_argument("--s3-endpoint", metavar="URL", help="the S3 endpoint, http://HOST:PORT")
    serve.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT")
    serve.add_argument("--publisher", action="append", default=[], metavar="KEYID",
                       help="hex ed25519 public key allowed to publish (repeatable)")
    serve.add_argument("--publishers-file", metavar="FILE",
                       help="file of allowed publisher key ids, one per line")
    serve.add_argument("--max-connections", type=int, default=4096, metavar="N")
    serve.add_argument("--registry", metavar="URL",
                       help="node registry: postgresql://... (several replicas) or "
                            "sqlite:PATH (default: DIR/.hub/registry.sqlite3; in memory "
                            "with --store and no DIR)")
    serve.add_argument("--history-days", type=int, default=30, metavar="N",
                       help="days of node history kept (default 30)")
    serve.add_argument("--stale-after", type=int, default=600, metavar="S",
                       help="seconds without a heartbeat before a node counts as stale")

    pusher = add_command(commands, "push", "publish flists, roots and a manifest to a hub",
                         _push)
    pusher.add_argument("--hub", required=True, metavar="URL")
    pusher.add_argument("--key", required=True, metavar="KEYFILE", help="publisher key file")
    pusher.add_argument("--store", required=True, metavar="DIR", help="local flist store")
    pusher.add_argument("--flist", action="append", default=[], metavar="ID|TAG",
                        help="flist to push (repeatable; default: every flist in the store)")
    pusher.add_argument("--root", action="append", default=[], metavar="FILE",
                        help="signed root file to publish first (repeatable, in order)")
    pusher.add_argument("--manifest", metavar="FILE", help="signed manifest to publish last")
    pusher.add_argument("--parallel", type=int, default=8, metavar="N")
    pusher.add_argument("--json", action="store_true",
                        help="print a JSON summary of what was sent on stdout")

    nodes = add_command(commands, "nodes", "list the nodes a hub has heard from", _nodes)
    nodes.add_argument("--hub", required=True, metavar="URL")
    nodes.add_argument("--json", action="store_true", help="print the hub's JSON as is")

    from zosnode.cli import hub_maintenance  # gc, verify, mirror

    hub_maintenance.register(commands)


def _log(msg: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} hub: {msg}",
          file=sys.stderr, flush=True)


def _publishers(args: argparse.Namespace) -> list[str]:
    ids = list(args.publisher)
    if args.publishers_file:
        try:
            text = Path(args.publishers_file).read_text()
        except OSError as exc:
            raise UserError(f"--publishers-file {args.publishers_file}: {exc.strerror}") from None
        ids += [line.split("#")[0].strip() for line in text.splitlines()
                if line.split("#")[0].strip()]
    for kid in ids:
        if not is_hex_id(kid):
            raise UserError(f"publisher key {kid[:80]!r} is not 64 lowercase hex digits")
    return ids


def _storage(args: argparse.Namespace) -> Storage:
    if args.store:
        if not args.s3_endpoint:
            raise UserError("--store s3://... needs --s3-endpoint http://HOST:PORT")
        return S3Storage.from_url(args.store, args.s3_endpoint)
    if not args.data:
        raise UserError("give --data DIR or --store s3://BUCKET[/PREFIX]")
    # A new hub starts from an empty directory: make it, as `mkdir -p` would.
    try:
        os.makedirs(args.data, mode=0o755, exist_ok=True)
    except FileExistsError:
        raise UserError(f"--data {args.data}: not a directory") from None
    except OSError as exc:
        raise UserError(f"--data {args.data}: {exc.strerror}") from None
    return LocalStorage(args.data)


def _serve(args: argparse.Namespace) -> int:
    publishers = _publishers(args)
    storage = _storage(args)
    if args.max_connections < 1:
        raise UserError("--max-connections must be at least 1")
    limits = Limits(max_connections=args.max_connections)
    registry = Registry(open_backend(args.registry, args.data),
                        history_days=args.history_days, stale_after_s=args.stale_after)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            try:
                hub: RunningHub = await nursery.start(
                    lambda task_status: run_hub(storage, args.listen, publishers=publishers,
                                                registry=registry,
                                                limits=limits, log=_log,
                                                task_status=task_status))
            except OSError as exc:
                raise UserError(f"cannot listen on {args.listen}: {exc.strerror}") from None
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    _log(f"{signal.Signals(signum).name}: finishing requests in flight")
                    hub.server.shutdown()
                    break

    try:
        trio.run(main)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    except BaseExceptionGroup as group:
        # The nursery wraps a start-up failure; surface the user's mistake.
        for leaf in _leaves(group):
            if isinstance(leaf, UsageError):
                raise leaf from None
            if isinstance(leaf, (ValueError, StorageError, RegistryError)):
                raise UserError(str(leaf)) from None
        raise
    return 0


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _push(args: argparse.Namespace) -> int:
    key = keyfile.load(Path(args.key))
    if not os.path.isdir(args.store):
        raise UserError(f"--store {args.store}: no such directory")
    roots = [_read(p, "--root") for p in args.root]
    manifest = _read(args.manifest, "--manifest") if args.manifest else None

    meter = Meter.on_stderr()

    def progress(msg: str) -> None:
        if meter.show:
            meter.note(f"push: {msg}")
        else:
            print(f"push: {msg}", file=sys.stderr, flush=True)

    started = time.monotonic()
    try:
        report = trio.run(lambda: push(args.store, args.hub, key, flists=args.flist,
                                       roots=roots, manifest=manifest,
                                       parallel=max(1, args.parallel), progress=progress,
                                       meter=meter))
    except PushError as exc:
        raise UserError(str(exc)) from None
    except ZosError as exc:
        raise UserError(f"push: {exc}") from None
    finally:
        meter.finish()
    took = time.monotonic() - started
    if args.json:
        print(json.dumps({**dataclasses.asdict(report), "seconds": round(took, 3),
                          "bytes_per_second": round(report.bytes_sent / took) if took > 0
                          else None}, sort_keys=True))
        return 0
    print(f"pushed {report.blocks_sent} of {report.blocks_total} block(s) "
          f"({report.bytes_sent} bytes), {report.flists_sent} flist(s), "
          f"{report.roots_sent} root(s), {report.tags_sent} tag(s)"
          + (f", manifest {report.manifest}" if report.manifest else ""))
    return 0


def _read(path: str, flag: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"{flag} {path}: {exc.strerror}") from None


def _nodes(args: argparse.Namespace) -> int:
    url = base_url(args.hub) + "/api/v1/nodes"
    try:
        reply = run_request("GET", url, max_size=64 * 1024 * 1024,
                            timeouts=Timeouts(connect=5.0, head=15.0, body_idle=15.0))
    except HttpPeerError as exc:
        # The hub the user named cannot be reached: say so, in one line.
        raise UserError(str(exc)) from None
    if reply.status != 200:
        raise UserError(f"{args.hub}: HTTP {reply.status} for /api/v1/nodes")
    body = reply.body
    if args.json:
        sys.stdout.write(body.decode())
        return 0
    doc = json.loads(body)
    print(f"{'NODE':<16} {'FARM':<12} {'CHANNEL':<10} {'RELEASE':>7} {'STATE':<8} "
          f"{'UPTIME':>8} {'SEEN':>6}  SERVICES")
    stale = 0
    for n in doc["nodes"]:
        services = ",".join(f"{s['name']}={s['state']}" for s in n["services"]) or "-"
        state = n.get("state", "-") + ("*" if n.get("stale") else "")
        stale += bool(n.get("stale"))
        print(f"{n['node_id'][:16]:<16} {n['farm'][:12]:<12} {n['channel'][:10]:<10} "
              f"{n['release']:>7} {state:<8} {n['uptime_s']:>7}s {n['age_s']:>5}s  {services}")
    print(f"{doc['count']} node(s)" + (f", {stale} stale (*)" if stale else ""))
    return 0
