"""`zosnode node run`, entered by `zosnode.entry` (as /init): PID 1 duties, the command line, the
network, then the boot stage, which never returns; outside PID 1 only in its own netns."""

import argparse
import contextlib
import functools
import importlib
import importlib.util
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import trio

from zosnode.agent import bringup, cmdline, phases, pid1, secureboot, settings, spare
from zosnode.cliparser import CliParser
from zosnode.entry import CHILD_COMMAND
from zosnode.errors import UserError

AfterNetwork = Callable[[cmdline.Config, bringup.Network, pid1.Say], Awaitable[None]]
HELP = "run the node agent: PID 1 duties, firewall, network, boot"


def main(argv: Sequence[str]) -> int:
    """`zosnode node run ARGV` (`zosnode --debug node run` comes through the CLI)."""
    parser = CliParser(prog="zosnode node run", description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv, argparse.Namespace(debug=False)))


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--cmdline", metavar="TEXT",
                     help="kernel command line to use instead of /proc/cmdline")
    src.add_argument("--cmdline-file", metavar="FILE", type=Path,
                     help="read the kernel command line from FILE")
    p.add_argument("--exit-after-bringup", action="store_true",
                   help="exit 0 once a NIC is configured (tests, benchmarks; not as PID 1)")
    p.add_argument("--network-only", action="store_true",
                   help="after bring-up keep the network up and skip the boot stage (tests)")
    p.add_argument("--resolv-conf", metavar="FILE", type=Path, default=Path("/etc/resolv.conf"),
                   help="where to write the chosen lease's DNS servers")
    p.add_argument("--fatal-delay", metavar="SECONDS", type=int, default=30,
                   help="delay before rebooting after a fatal error (PID 1; default 30)")
    p.add_argument("--mounts", choices=("auto", "fuse", "extract"), default="auto",
                   help="flists lazily through FUSE, or extracted verified into the run "
                        "directory (auto: FUSE given /dev/fuse and pyfuse3)")


# The modules the initramfs packed, resolved by its builder: the image decides what loads.
INITRAMFS_MODULES = Path("/etc/zosnode/modules")


def _read_cmdline(args: argparse.Namespace) -> str:
    if args.cmdline is not None:
        return str(args.cmdline)
    path: Path = args.cmdline_file or Path("/proc/cmdline")
    try:
        return path.read_text(errors="replace")
    except OSError as exc:
        if args.cmdline_file is not None:
            raise UserError(f"cannot read command line file {path}: {exc.strerror}") from None
        return ""  # no /proc yet is not a reason to stop a node


def _fuse_command(mode: str) -> list[str] | None:
    """The argv of the FUSE mount child from this very artifact, or None to extract."""
    if mode == "extract":
        return None
    if not (Path("/dev/fuse").exists() and importlib.util.find_spec("pyfuse3") is not None):
        if mode == "fuse":
            raise UserError("--mounts fuse: no /dev/fuse or no pyfuse3 on this node")
        return None
    from zosnode.artifact.record import running_archive

    archive = running_archive()
    me = [sys.executable, "-I", str(archive)] if archive else [sys.executable, "-m", "zosnode"]
    return [*me, CHILD_COMMAND]


class BootStage:
    """Imports the boot stage in a thread once the bring-up waits (DHCP), not before (it would hold
    the GIL against the firewall's and links' netlink calls); a failed import raises when joined."""

    MODULE = "zosnode.agent.boot"

    def __init__(self, fuse_command: list[str] | None, boot: phases.BootClock) -> None:
        self.fuse_command, self.boot = fuse_command, boot
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._load, name="boot-stage-import", daemon=True)

    def start(self) -> None:
        if self._thread.ident is None:
            self._thread.start()

    def _load(self) -> None:
        try:
            importlib.import_module(self.MODULE)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the agent's task
            self._error = exc

    async def after_network(self, config: cmdline.Config, network: bringup.Network,
                            say: pid1.Say) -> None:
        self.start()
        await trio.to_thread.run_sync(self._thread.join)
        if self._error is not None:
            raise self._error
        stage = sys.modules[self.MODULE]
        await stage.after_network(config, network, say, fuse_command=self.fuse_command,
                                  boot=self.boot)


def run(args: argparse.Namespace) -> int:
    say = pid1.console_writer(sys.stdout)
    if os.getpid() != 1:
        return _run(args, say, False)
    try:
        return _run(args, say, True)
    except BaseException as exc:  # noqa: BLE001 - an init that exits panics the kernel
        pid1.fatal(exc, say, args.fatal_delay, args.debug)


def _in_own_netns(run_netns: Path = Path("/run/netns")) -> bool:
    """True only if our namespace is one `ip netns` made, or PID 1's differs from it: guessing
    wrong would replace a workstation's firewall and routes."""
    try:
        mine = os.stat("/proc/self/ns/net")
    except OSError:
        return False
    with contextlib.suppress(OSError):
        if any(os.path.samestat(os.stat(entry), mine) for entry in run_netns.iterdir()):
            return True
    try:
        return not os.path.samestat(os.stat("/proc/1/ns/net"), mine)
    except OSError:
        return False


def _run(args: argparse.Namespace, say: pid1.Say, is_init: bool) -> int:
    boot = phases.BootClock()  # from this process's start
    if is_init and args.exit_after_bringup:
        raise UserError("--exit-after-bringup makes no sense as PID 1")
    if not is_init and not _in_own_netns():
        raise UserError("node run outside PID 1 must run in its own network namespace "
                        "(ip netns exec NAME zosnode node run ...)")
    if is_init:
        pid1.mount_pseudo(Path("/"), say)
    # A signed kernel image's farm settings (zosnode.agent.settings); never with --cmdline.
    extra = settings.load() if args.cmdline is None and args.cmdline_file is None else settings.NONE
    parsed = cmdline.parse(_read_cmdline(args), extra.config)
    for note in (*extra.notes, *parsed.notes):
        say(f"cmdline: {note}")
    config = parsed.config
    say(f"config: farm {config.farm or '-'} channel {config.channel} "
        f"hubs {' '.join(config.hubs) or '-'}{' net ' + config.net if config.net else ''}")
    if is_init:
        listing = ""
        with contextlib.suppress(OSError):
            listing = INITRAMFS_MODULES.read_text()
        pid1.load_modules(Path("/lib/modules") / os.uname().release, listing, say)
        pid1.seed_entropy(os.uname().nodename.encode(), say)
        # After the modules (efivarfs); "on" means the firmware checked this image.
        say(f"secure boot: {secureboot.node_state()}")
    boot.mark("modules")
    stage: BootStage | None = None
    if not (args.exit_after_bringup or args.network_only):
        fuse = _fuse_command(args.mounts)
        say(f"flists: {'FUSE mounts' if fuse else 'verified extraction'}")
        if fuse:  # its start-up overlaps the network's bring-up
            spare.fork(fuse)
        stage = BootStage(fuse, boot)
    options = bringup.Options(resolv_conf=args.resolv_conf,
                              on_waiting=stage.start if stage else None)
    agent = functools.partial(run_agent, config, say, options,
                              stage.after_network if stage else None, args.exit_after_bringup)
    return pid1.run_node(agent, say, args.fatal_delay, pid1=is_init,
                         debug=config.debug or args.debug)


async def run_agent(config: cmdline.Config, say: pid1.Say, options: bringup.Options,
                    after: AfterNetwork | None, exit_after_bringup: bool = False) -> None:
    async with trio.open_nursery() as nursery:
        started = trio.current_time()
        network: bringup.Network = await nursery.start(bringup.Bringup(config, say, options).run)
        lease = network.lease
        assert network.chosen is not None and lease is not None
        say(f"network up on {network.chosen.name}: {lease.address}/{lease.prefixlen} "
            f"in {trio.current_time() - started:.3f}s")
        if exit_after_bringup:
            nursery.cancel_scope.cancel()
            return
        if after is None:
            say("no boot stage; keeping the network up")
            await trio.sleep_forever()
        else:
            await after(config, network, say)
