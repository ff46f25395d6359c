"""PID 1 duties: pseudo filesystems, modules, entropy, hostname, reaping, signals, reboot. As PID 1
`run_node` never returns (an init that exits panics the kernel): fatal is shown, then a reboot."""

import contextlib
import ctypes
import errno
import math
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import NoReturn, TextIO

import trio

from zosnode.mount.mountpoint import libc as _libc

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_NOATIME = 0x1, 0x2, 0x4, 0x8, 0x400
SYS_FINIT_MODULE = 313  # x86_64
MODULE_INIT_COMPRESSED_FILE = 4
CMD_RESTART, CMD_POWER_OFF, CMD_CAD_OFF = 0x01234567, 0x4321FEDC, 0

Say = Callable[[str], None]


def console_writer(stream: TextIO) -> Say:
    """One `zosnode: ...` line per call, flushed at once (the console is all a farmer has)."""

    def say(line: str) -> None:
        stream.write(f"zosnode: {line}\n")
        stream.flush()

    return say


def mount(source: str | Path, target: Path, fstype: str, flags: int, data: str = "") -> int:
    """mount(2): 0, or the errno it failed with."""
    rc = _libc().mount(os.fsencode(source), os.fsencode(target), fstype.encode(),
                       ctypes.c_ulong(flags), data.encode() or None)
    return ctypes.get_errno() if rc != 0 else 0


# (source, target under the root, fstype, flags, data)
PSEUDO_MOUNTS = (("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, ""),
                 ("sysfs", "sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, ""),
                 ("devtmpfs", "dev", "devtmpfs", MS_NOSUID, "mode=0755"),
                 ("tmpfs", "run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"),
                 ("tmpfs", "var/lib/zosnode", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700"))


def mount_pseudo(root: Path, say: Say) -> None:
    for source, where, fstype, flags, data in PSEUDO_MOUNTS:
        target = root / where
        target.mkdir(parents=True, exist_ok=True)
        err = mount(source, target, fstype, flags, data)
        if err == errno.EBUSY:
            continue  # already mounted (the kernel mounts devtmpfs itself sometimes)
        say(f"mount {fstype} on {target} failed: {os.strerror(err)}" if err
            else f"mounted {fstype} on {target}")


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1].split(".ko")[0]


def modules_to_load(listing: str, devices: Callable[[], Sequence[str]],
                    present: Callable[[str], bool] = os.path.exists) -> Iterator[tuple[str, bool]]:
    """Each path of `listing` (kmod.render_load_list) and whether it loads, decided lazily at
    its turn (what loaded before may have made devices): unless nothing it serves is there, by
    modalias in `devices()` (a bus of which none was read leaves all in) or a path `present`."""
    for path, *aliases in (line.split() for line in listing.splitlines() if line.strip()):
        found = devices() if aliases else ()
        yield path, not aliases or any(_matches(a, found, present) for a in aliases)


def _matches(alias: str, devices: Sequence[str], present: Callable[[str], bool]) -> bool:
    if alias.startswith("/"):
        return present(alias)  # a bus or firmware of which the builder knows no device early
    on_bus = [d for d in devices if d.startswith(alias.split(":")[0].rstrip("*") + ":")]
    head = alias.split("*")[0].split("?")[0].split("[")[0]  # no regex compiled if this differs
    return not on_bus or any(d.startswith(head) and fnmatchcase(d, alias) for d in on_bus)


def load_modules(moddir: Path, listing: str, say: Say, sysfs: Path = Path("/sys/bus")) -> int:
    def modaliases(bus: str) -> list[str]:
        found = []
        for device in (sysfs / bus / "devices").glob("*"):
            with contextlib.suppress(OSError):
                found.append((device / "modalias").read_text().strip())
        return found

    if not listing.strip():
        return 0
    known = modaliases("pci") + modaliases("acpi")  # both enumerated before /init
    libc, loaded, order, absent = _libc(), 0, 0, list[str]()
    for rel, wanted in modules_to_load(listing, lambda: known + modaliases("virtio")):
        if not wanted:
            absent.append(rel)
            continue
        order += 1
        flags = 0 if rel.endswith(".ko") else MODULE_INIT_COMPRESSED_FILE
        try:
            with open(moddir / rel, "rb", buffering=0) as f:
                rc = libc.syscall(SYS_FINIT_MODULE, f.fileno(), b"", flags)
                err = ctypes.get_errno() if rc != 0 else 0
        except OSError as exc:
            say(f"modules: {rel}: {exc.strerror}")
            continue
        if rc == 0:
            loaded += 1
        elif err != errno.EEXIST:
            say(f"modules: loading {_name(rel)} failed: {os.strerror(err)}")
    say(f"modules: {loaded} of {order} loaded; no device for {' '.join(map(_name, absent)) or '-'}")
    return loaded


def seed_entropy(extra: bytes, say: Say, urandom: Path = Path("/dev/urandom")) -> None:
    """Mix boot-unique bytes into the pool (uncredited); report if the CRNG is ready."""
    try:
        with open(urandom, "wb", buffering=0) as f:
            f.write(extra + time.monotonic_ns().to_bytes(8, "little")
                    + time.time_ns().to_bytes(8, "little"))
    except OSError as exc:
        say(f"entropy: cannot write {urandom}: {exc.strerror}")
    try:
        os.getrandom(1, os.GRND_NONBLOCK)
        say("entropy: kernel random pool ready")
    except BlockingIOError:
        say("entropy: kernel random pool not yet initialised; key generation will wait for it")


def hostname_for(node_id: str) -> str:
    return "zos-" + node_id[:16].lower()


def set_hostname(node_id: str, say: Say) -> None:
    name = hostname_for(node_id)
    try:
        socket.sethostname(name)
        say(f"hostname {name}")
    except OSError as exc:
        say(f"hostname {name} not set: {exc.strerror}")


class Reaper:
    """Reaps orphans' zombies `grace` s late: owners need the status (pidfd waiters reap fast)."""

    def __init__(self, grace: float = 2.0) -> None:
        self.grace = grace
        self.reaped = 0
        self._first_seen: dict[int, float] = {}

    def reap_once(self, now: float) -> list[tuple[int, int]]:
        me = os.getpid()
        zombies = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            fields = stat[stat.rfind(")") + 2:].split()
            if len(fields) >= 2 and fields[0] == "Z" and int(fields[1]) == me:
                zombies.append(int(entry.name))
        self._first_seen = {z: self._first_seen.get(z, now) for z in zombies}
        out = []
        for pid in zombies:
            if now - self._first_seen[pid] < self.grace:
                continue
            try:
                got, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                got, status = 0, 0  # its owner got there first
            self._first_seen.pop(pid, None)
            if got:
                self.reaped += 1
                out.append((got, status))
        return out

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.open_signal_receiver(signal.SIGCHLD) as signals:
            task_status.started()
            while True:
                self.reap_once(trio.current_time())
                # Wake on SIGCHLD, and after the grace period for zombies not yet old enough.
                with trio.move_on_after(self.grace if self._first_seen else math.inf):
                    await signals.__anext__()


def become_subreaper() -> None:
    """Outside PID 1, orphans of our children come to us instead (PR_SET_CHILD_SUBREAPER)."""
    _libc().prctl(36, 1, 0, 0, 0)


def reboot(command: int) -> NoReturn:
    os.sync()
    _libc().reboot(command)
    while True:  # reboot(2) does not return; if it ever does, stay alive
        time.sleep(3600)


async def _supervise(main: Callable[[], Awaitable[None]], say: Say, pid1: bool) -> str:
    action = "exit"  # or "reboot", "poweroff"
    async with trio.open_nursery() as nursery:
        if not pid1:
            become_subreaper()
        await nursery.start(Reaper().run)

        async def watch_signals(*, task_status: trio.TaskStatus[None]) -> None:
            nonlocal action
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                # In place before the agent runs: PID 1 ignores a signal it has no handler for.
                task_status.started()
                async for signum in signals:
                    # SIGINT is what the kernel sends init on ctrl-alt-del.
                    action = "poweroff" if signum == signal.SIGTERM else "reboot"
                    say(f"{signal.Signals(signum).name}: orderly {action}")
                    nursery.cancel_scope.cancel()
                    return

        await nursery.start(watch_signals)
        await main()
        if pid1:
            raise RuntimeError("the agent returned; PID 1 must not")
        nursery.cancel_scope.cancel()
    return action


def show_fatal(exc: BaseException, say: Say, debug: bool) -> None:
    leaf = exc
    while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
        leaf = leaf.exceptions[0]  # show the cause, not trio's wrapping
    say(f"fatal: {type(leaf).__name__}: {' '.join(str(leaf).split()) or '(no detail)'}")
    if debug:
        traceback.print_exception(exc, file=sys.stderr)


def fatal(exc: BaseException, say: Say, delay_s: float, debug: bool = False) -> NoReturn:
    show_fatal(exc, say, debug)
    say(f"rebooting in {delay_s:g}s")
    time.sleep(delay_s)
    reboot(CMD_RESTART)


def run_node(main: Callable[[], Awaitable[None]], say: Say, fatal_delay_s: float,
             pid1: bool, debug: bool = False) -> int:
    if pid1:
        # Ctrl-alt-del becomes SIGINT to us instead of an immediate reboot.
        _libc().reboot(CMD_CAD_OFF)  # glibc supplies the magic numbers
    try:
        action = trio.run(_supervise, main, say, pid1)
    except BaseException as exc:  # noqa: BLE001 - PID 1 must survive anything
        if not pid1:
            show_fatal(exc, say, debug)
            return 1
        fatal(exc, say, fatal_delay_s, debug)
    if pid1:
        reboot(CMD_POWER_OFF if action == "poweroff" else CMD_RESTART)
    say(f"stopped ({action})")
    return 0
