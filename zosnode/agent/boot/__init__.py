"""The boot stage: what `zosnode node run` does once the network is up (`after_network`)."""

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import trio

from zosnode import __version__, layout
from zosnode.agent import cachedisk, pid1
from zosnode.agent.boot.errors import BootError
from zosnode.agent.boot.hubs import HubClient
from zosnode.agent.boot.mounters import ExtractMounter, FuseChildMounter, Mounter
from zosnode.agent.boot.node import BootSettings, Node
from zosnode.agent.bringup import Network
from zosnode.agent.cmdline import Config
from zosnode.agent.console import NodeStatus, StatusBoard, console_task
from zosnode.agent.identity import load_or_create
from zosnode.agent.phases import BootClock
from zosnode.cache.store import BlockCache
from zosnode.fetch.fetcher import Fetcher
from zosnode.trust.anchor import Anchor, load_embedded


async def after_network(
    config: Config, network: Network, say: pid1.Say, *, anchor: Anchor | None = None,
    run_dir: Path = Path("/run/zosnode"), cache_dir: Path | None = None,
    cache_bytes: int = 512 * 1024 * 1024, settings: BootSettings | None = None,
    fuse_command: Sequence[str] | None = None, boot: BootClock | None = None,
) -> None:
    """Never returns. `anchor` only from code embedding the agent (tests), never the command line;
    the cache dir (or disk) keeps the node key too; without `fuse_command` flists are extracted."""
    boot = boot or BootClock()
    boot.mark("network")
    trusted = anchor if anchor is not None else load_embedded()
    if trusted is None:
        raise BootError("this build carries no trust anchor (build_zipapp.py --anchor)")
    if not config.hubs:
        raise BootError("no hub given: boot with zos.hub=http://HOST:PORT")
    settings = settings or BootSettings(channel=config.channel, farm=config.farm or "",
                                        run_dir=run_dir, agent_version=__version__)
    disk: cachedisk.CacheDisk | None = None
    note = ""
    if config.cache or config.cache_format:
        found = await trio.to_thread.run_sync(functools.partial(
            cachedisk.open_cache, config.cache, config.cache_format, cache_bytes, say))
        if isinstance(found, str):
            note = found
            say(f"cache: {found}; blocks are kept in RAM")
        else:
            disk, cache_dir, cache_bytes = found, found.path, found.size_bytes
            say(f"cache: {found.fs.device} (ext4 {found.fs.label} {found.fs.uuid}) at "
                f"{found.path}, up to {found.size_bytes >> 20} MiB")
    boot.mark("cache")
    hardware = cachedisk.hardware(disk.fs.disk if disk else None)
    say(f"hardware: {hardware.cpus} CPUs, {hardware.memory_bytes >> 20} MiB, disks "
        + (", ".join(f"{d.name} {d.size_bytes >> 20} MiB {d.model or '-'} {d.role}"
                     for d in hardware.disks) or "-"))
    identity = load_or_create(cache_dir)
    say(f"node id {identity.node_id} (identity from {identity.describe()})")
    if os.getpid() == 1:
        pid1.set_hostname(identity.node_id, say)
    run_dir.mkdir(parents=True, exist_ok=True)
    blocks_dir = (cache_dir or run_dir) / layout.BLOCKS
    try:
        cache = BlockCache(blocks_dir, cache_bytes, durable=cache_dir is not None)
    except OSError as exc:  # a disk that failed since: RAM, never a failed boot
        note = f"{blocks_dir}: {exc.strerror or exc}"
        say(f"cache: {note}; blocks are kept in RAM")
        disk, cache_dir, blocks_dir = None, None, run_dir / layout.BLOCKS
        cache = BlockCache(blocks_dir, cache_bytes)
    hubs = HubClient(config.hubs, config.channel, fetcher=Fetcher(config.hubs),
                     flist_dir=disk.path / layout.FLISTS if disk else None)
    mounter: Mounter
    children = None
    if fuse_command:
        mounter = FuseChildMounter(fuse_command, mirrors=lambda: hubs.sources,
                                   cache_dir=blocks_dir, cache_bytes=cache_bytes,
                                   durable=cache_dir is not None, say=say)
        children = mounter.cache_counts
    else:
        mounter = ExtractMounter(lambda: hubs.fetcher, cache, say)
    first_use = None
    if disk is not None:
        mounter = first_use = cachedisk.FirstUse(mounter, cache, lambda: hubs.fetcher, say)
    report = functools.partial(cachedisk.cache_report, "disk" if disk else "ram", cache, note,
                               first_use, children)
    board = StatusBoard(NodeStatus(
        node_id=identity.node_id, identity=identity.source, farm=settings.farm,
        channel=settings.channel, phase="fetching manifest", addresses=tuple(network.addresses()),
        cache=(f"disk {disk.fs.device}, up to {disk.size_bytes >> 20} MiB" if disk
               else f"RAM{' (' + note + ')' if note else ''}")))
    node = Node(settings, anchor=trusted, identity=identity, hubs=hubs, mounter=mounter,
                board=board, say=say, network=network, boot=boot, hardware=hardware,
                cache_report=report)

    def draw(text: str) -> None:
        for line in text.splitlines():
            say(line)

    async def follow_network() -> None:
        while True:
            await network.changed.wait()
            board.update(addresses=tuple(network.addresses()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow_network)
        await nursery.start(console_task, board, draw)
        await nursery.start(node.run)
