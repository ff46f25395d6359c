"""After the network is up: manifest -> mounts -> services -> ready -> heartbeats, then upgrades.

`Node.run` is a trio service. It asks the hubs for the channel's signed
manifest until one answers with something the `Verifier` accepts (backing
off between rounds: a hub down at boot only delays the boot), mounts the
pinned flists, starts the services, waits for readiness, prints
`zosnode: ready <release> <node-id>` and reports `started()`. From then on it
sends signed heartbeats and polls for upgrades on a jittered interval with
conditional requests; `UpgradePolicy` decides what to do with what it finds.

Each release is mounted under `run_dir/<version>/<flist name>`, so a new one
comes up beside the old; the manifest's `mount` is the flist's logical place
and relative argv resolve against the flist's directory. A release lives in
its own cancel scope: cancelling it unmounts, after its runner has stopped.

The I/O this module needs is behind two small protocols, `Hubs` (manifest,
roots, flists, heartbeats) and `Mounter` (one flist at one directory, as a
trio service), with real implementations here: `HubClient` over
`zosnode.http.client` and `ExtractMounter` over the block cache.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import random
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import trio

from zosnode import __version__
from zosnode.agent.bringup import Network
from zosnode.agent.cmdline import Config
from zosnode.agent.console import StatusBoard, console_task, ready_message
from zosnode.agent.identity import NodeIdentity, load_or_create
from zosnode.agent.services.events import StateChanged
from zosnode.agent.services.runner import ServiceRunner
from zosnode.agent.upgrade import (
    Ignore,
    IgnoreWhy,
    PollSchedule,
    Stage,
    UpgradePolicy,
)
from zosnode.cache.store import BlockCache
from zosnode.errors import ZosError
from zosnode.fetch.backoff import Backoff
from zosnode.fetch.errors import FetchError
from zosnode.fetch.fetcher import Fetcher
from zosnode.flist.blocks import BlockRef
from zosnode.flist.errors import FlistError
from zosnode.flist.extract import extract
from zosnode.flist.view import FlistView
from zosnode.http.client import HttpClient, HttpError, HttpStatusError, Timeouts
from zosnode.hub.httpreq import HttpConnection, RequestError
from zosnode.hub.httpreq import Origin as PostOrigin
from zosnode.mount.service import detach
from zosnode.trust.anchor import Anchor, load_embedded
from zosnode.trust.errors import Refused, TrustError
from zosnode.trust.manifest import MAX_MANIFEST_BYTES, FlistPin, Manifest
from zosnode.trust.root import MAX_ROOT_BYTES
from zosnode.trust.verifier import Verifier, effective_now
from zosnode.wire.heartbeat import Heartbeat, ServiceState, encode_signed

Say = Callable[[str], None]


class BootError(ZosError):
    """Base of the boot sequence's errors."""


class HubsUnreachable(BootError):
    """No hub answered (every one refused, timed out or failed)."""


class ReleaseFailed(BootError):
    """A release could not be brought up (an flist could not be fetched or mounted)."""


# -- what boot needs from the outside ------------------------------------------


class Hubs(Protocol):
    async def manifest(self) -> bytes | None:
        """The channel's manifest; None if unchanged since the last answer."""

    async def root(self, version: int) -> bytes | None:
        """Signed root `version`, or None when the hubs have none (404)."""

    async def flist(self, pin: FlistPin) -> bytes:
        """The flist bytes `pin` names, hash-checked against `pin.id`."""

    async def heartbeat(self, data: bytes) -> None:
        """Deliver a signed heartbeat to a hub."""


class Mounter(Protocol):
    async def serve(
        self,
        pin: FlistPin,
        flist: bytes,
        where: Path,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Make `flist` readable at `where`, `started()`, and undo it when cancelled."""


# -- settings -------------------------------------------------------------------


@dataclass(frozen=True)
class BootSettings:
    channel: str
    farm: str
    run_dir: Path
    agent_version: str
    poll: PollSchedule = PollSchedule(30_000, 5_000)
    readiness_deadline_ms: int = 60_000
    heartbeat_interval_s: float = 30.0
    # Between boot rounds when no hub gave a usable manifest.
    boot_backoff: Backoff = field(default_factory=lambda: Backoff(base_s=0.5, cap_s=30.0))


# -- one release: its mounts and its services -------------------------------------


class Release:
    """A manifest's flists mounted and its services running, in one cancel scope."""

    def __init__(self, manifest: Manifest, run_dir: Path) -> None:
        self.manifest = manifest
        self.root = run_dir / str(manifest.version)
        self.mounts = {p.name: self.root / p.name for p in manifest.flists}
        self.runner: ServiceRunner | None = None
        self._scope = trio.CancelScope()
        self._gone = trio.Event()

    @property
    def version(self) -> int:
        return self.manifest.version

    async def serve(
        self,
        hubs: Hubs,
        mounter: Mounter,
        on_change: Callable[[StateChanged], None],
        on_line: Callable[[str, str], None],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Fetch and mount every flist, start the services, report started; run until closed."""
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    for pin in self.manifest.flists:
                        try:
                            data = await hubs.flist(pin)
                        except (FetchError, TrustError, HttpError) as exc:
                            raise ReleaseFailed(f"flist {pin.name}: {exc}") from None
                        where = self.mounts[pin.name]
                        where.mkdir(parents=True, exist_ok=True)
                        try:
                            await nursery.start(mounter.serve, pin, data, where)
                        except (FlistError, FetchError, OSError) as exc:
                            raise ReleaseFailed(f"mount {pin.name}: {exc}") from None
                    self.runner = ServiceRunner(
                        self.manifest.services,
                        mounts=self.mounts,
                        on_change=on_change,
                        on_line=on_line,
                    )
                    await nursery.start(self.runner.run)
                    task_status.started()
                    await trio.sleep_forever()
        finally:
            self._gone.set()
            shutil.rmtree(self.root, ignore_errors=True)

    async def close(self) -> None:
        """Stop the services (dependants first), then unmount."""
        if self.runner is not None and not self._gone.is_set():
            await self.runner.stop()
        self._scope.cancel()
        await self._gone.wait()


# -- the node --------------------------------------------------------------------


@dataclass
class Timings:
    """Milliseconds from agent start to each phase's end (the heartbeat carries them)."""

    marks: dict[str, int] = field(default_factory=dict)


class Node:
    def __init__(
        self,
        settings: BootSettings,
        *,
        anchor: Anchor,
        identity: NodeIdentity,
        hubs: Hubs,
        mounter: Mounter,
        board: StatusBoard,
        say: Say,
        wall_clock: Callable[[], float] = time.time,
        addresses: Callable[[], Sequence[str]] = tuple,
        audit: Callable[[], Sequence[str]] = tuple,
        rng: random.Random | None = None,
        started_at: float | None = None,
    ) -> None:
        self.settings = settings
        self.anchor = anchor
        self.verifier = Verifier(anchor)
        self.identity = identity
        self.hubs = hubs
        self.mounter = mounter
        self.board = board
        self.say = say
        self._wall = wall_clock
        self._addresses = addresses
        self._audit = audit
        self._rng = rng or random.SystemRandom()
        self.policy = UpgradePolicy(
            identity.node_id, readiness_deadline_ms=settings.readiness_deadline_ms
        )
        self.current: Release | None = None
        self.timings = Timings()
        self.failed_release: int | None = None
        self.refusals: list[str] = []  # what hubs sent that we refused, newest last
        self._t0 = trio.current_time() if started_at is None else started_at
        self._nursery: trio.Nursery | None = None
        self._heartbeat_now = trio.Event()
        self._last_sent = 0
        board.update(
            node_id=identity.node_id, farm=settings.farm, channel=settings.channel,
            phase="fetching manifest",
        )

    # -- helpers ---------------------------------------------------------------

    def _ms(self) -> int:
        return round((trio.current_time() - self._t0) * 1000)

    def _mark(self, phase: str) -> None:
        self.timings.marks.setdefault(phase, self._ms())  # boot phases only, not upgrades

    def _error(self, text: str) -> None:
        self.say(f"{text}")
        self.board.update(last_error=text)

    def _now(self) -> int:
        return effective_now(int(self._wall()), self.anchor)

    def _on_change(self, release: Release) -> Callable[[StateChanged], None]:
        def changed(ch: StateChanged) -> None:
            if self.current is release and release.runner is not None:
                self.board.update(services=release.runner.status())
            self.say(f"v{release.version} {ch.name}: {ch.state.value} ({ch.detail})")

        return changed

    def _on_line(self, release: Release) -> Callable[[str, str], None]:
        def line(name: str, text: str) -> None:
            self.say(f"[{name}] {text}")

        return line

    # -- fetching and verifying ----------------------------------------------------

    async def _verified(self, data: bytes) -> Manifest:
        """Refresh the root from the hubs, then verify `data` (raises `Refused`)."""
        refresh = self.verifier.refresh()
        while (wanted := refresh.wanted()) is not None:
            root = await self.hubs.root(wanted)
            if root is None:
                break
            refresh.received(root)
        refresh.finish(self._now())
        return self.verifier.verify_manifest(
            data, channel=self.settings.channel, now=self._now(),
            agent_version=self.settings.agent_version,
        ).manifest

    async def _first_manifest(self) -> Manifest:
        attempt = 0
        while True:
            try:
                data = await self.hubs.manifest()
                if data is not None:
                    return await self._verified(data)
                why = "hub said not modified before we had a manifest"
            except HubsUnreachable as exc:
                why = str(exc)
            except Refused as exc:
                why = f"manifest refused: {exc}"
                self.refusals.append(why)
            delay = self.settings.boot_backoff.delay(attempt, self._rng.random())
            self._error(f"{why}; retry in {delay:.1f} s")
            attempt += 1
            await trio.sleep(delay)

    # -- releases ----------------------------------------------------------------------

    async def _bring_up(self, manifest: Manifest) -> tuple[Release, str | None]:
        """Start `manifest` beside whatever runs; return it with None, or with why it failed."""
        assert self._nursery is not None
        release = Release(manifest, self.settings.run_dir)
        deadline = trio.current_time() + self.settings.readiness_deadline_ms / 1000
        try:
            with trio.fail_at(deadline):
                await self._nursery.start(
                    release.serve, self.hubs, self.mounter,
                    self._on_change(release), self._on_line(release),
                )
        except ReleaseFailed as exc:
            return release, str(exc)
        except trio.TooSlowError:
            return release, "flists not mounted within the readiness deadline"
        self._mark("mount")
        assert release.runner is not None
        with trio.move_on_at(deadline):
            if await release.runner.wait_settled():
                return release, None
            return release, "services never became ready: " + ", ".join(
                f"{s.name} {s.state.value} ({s.detail})"
                for s in release.runner.status() if s.name in release.runner.dead_ends
            )
        waiting = [s.name for s in release.runner.status() if s.state.value != "ready"
                   and s.state.value != "done"]
        return release, (f"not ready within {self.settings.readiness_deadline_ms} ms: "
                         + ", ".join(waiting))

    def _became_current(self, release: Release) -> None:
        self.current = release
        assert release.runner is not None
        self.board.update(release=release.version, services=release.runner.status())

    # -- the service -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            manifest = await self._first_manifest()
            self._mark("manifest")
            stage = self.policy.offer(manifest, self._ms())
            assert isinstance(stage, Stage)
            self.board.update(phase=f"starting release {manifest.version}")
            release, why = await self._bring_up(manifest)
            self.policy.staged_ready(self._ms())  # at boot there is nothing to return to
            if release.runner is None:
                raise ReleaseFailed(f"release {manifest.version}: {why}")
            self._became_current(release)
            self._mark("services")
            if why is not None:
                self.failed_release = manifest.version
                self._error(f"release {manifest.version} is degraded: {why}")
                self.board.update(phase="degraded")
            else:
                self.board.update(phase="ready")
            self.say(ready_message(manifest.version, self.identity.node_id))
            nursery.start_soon(self._heartbeats)
            task_status.started()
            await self._poll_forever()

    async def stop(self) -> None:
        if self.current is not None:
            await self.current.close()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    # -- upgrades ------------------------------------------------------------------------------

    async def _poll_forever(self) -> None:
        while True:
            at = self.settings.poll.next_poll(self._ms(), self._rng.random())
            await trio.sleep_until(self._t0 + at / 1000)
            await self.poll_once()

    async def poll_once(self) -> str:
        """One upgrade poll; returns what happened, in words (also on the console)."""
        try:
            data = await self.hubs.manifest()
        except HubsUnreachable as exc:
            self._error(f"upgrade poll: {exc}; keeping release {self.policy.current}")
            return "unreachable"
        if data is None:
            return "not modified"
        try:
            manifest = await self._verified(data)
        except HubsUnreachable as exc:
            self._error(f"upgrade poll: {exc}; keeping release {self.policy.current}")
            return "unreachable"
        except Refused as exc:
            why = f"manifest refused: {type(exc).__name__}: {exc}"
            self.refusals.append(why)
            self._error(why)
            return "refused"
        decision = self.policy.offer(manifest, self._ms())
        if isinstance(decision, Ignore):
            if decision.why in (IgnoreWhy.OUTSIDE_ROLLOUT, IgnoreWhy.FAILED_BEFORE):
                self.say(f"release {decision.version} not applied: {decision.why.value}")
            return decision.why.name.lower()
        return await self._upgrade(manifest)

    async def _upgrade(self, manifest: Manifest) -> str:
        old = self.current
        self.board.update(phase=f"upgrading to {manifest.version}")
        self.say(f"upgrading {self.policy.current} -> {manifest.version}")
        new, why = await self._bring_up(manifest)
        if why is None:
            self.policy.staged_ready(self._ms())
            self._became_current(new)
            if old is not None:
                await old.close()
            self.board.update(phase="ready")
            self.say(ready_message(manifest.version, self.identity.node_id))
            self._heartbeat_now.set()
            return "switched"
        rollback = self.policy.staged_failed(why, self._ms())
        await new.close()
        self.failed_release = rollback.version
        self._error(f"release {rollback.version} failed, back on {rollback.to_version}: {why}")
        self.board.update(phase="ready")
        self._heartbeat_now.set()
        return "rolled back"

    # -- heartbeats --------------------------------------------------------------------------

    def heartbeat(self) -> Heartbeat:
        services: tuple[ServiceState, ...] = ()
        if self.current is not None and self.current.runner is not None:
            services = tuple(
                ServiceState(s.name, s.state.value, s.restarts)
                for s in self.current.runner.status()
            )
        return Heartbeat(
            node_id=self.identity.node_id,
            farm=self.settings.farm,
            channel=self.settings.channel,
            release=self.policy.current or 0,
            agent_version=self.settings.agent_version,
            sent_at=self._sent_at(),
            uptime_s=self._ms() // 1000,
            services=services,
            addresses=tuple(self._addresses()),
            audit=tuple(self._audit()),
            failed_release=self.failed_release,
            boot_timings_ms=dict(self.timings.marks),
        )

    def _sent_at(self) -> int:
        # The hub keeps only a heartbeat newer than the last: two in one second
        # (an upgrade's right after a periodic one) must still differ.
        self._last_sent = max(int(self._wall()), self._last_sent + 1)
        return self._last_sent

    async def send_heartbeat(self) -> bool:
        try:
            await self.hubs.heartbeat(encode_signed(self.heartbeat(), self.identity.signing_key))
        except HubsUnreachable as exc:
            self._error(f"heartbeat: {exc}")
            return False
        return True

    async def _heartbeats(self) -> None:
        while True:
            await self.send_heartbeat()
            with trio.move_on_after(self.settings.heartbeat_interval_s):
                await self._heartbeat_now.wait()
            self._heartbeat_now = trio.Event()


# -- real I/O: hubs over HTTP ---------------------------------------------------------


class HubClient:
    """The hubs of the kernel command line (then the manifest's), tried in turn.

    Manifest polls are conditional (If-None-Match with the hub's ETag): an
    unchanged manifest costs a 304 and no body. Flists and blocks come through
    the `Fetcher`, which trusts only hashes.
    """

    def __init__(
        self,
        hubs: Sequence[str],
        channel: str,
        *,
        fetcher: Fetcher,
        client: HttpClient | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        if not hubs:
            raise BootError("no hub configured")
        self.hubs = [h.rstrip("/") for h in hubs]
        self.channel = channel
        self.fetcher = fetcher
        self.client = client or HttpClient(
            timeouts=Timeouts(connect=timeout_s, head=timeout_s, body_idle=timeout_s)
        )
        self.timeout_s = timeout_s
        self._etags: dict[str, str] = {}
        self._good = 0  # index of the hub that answered last
        self.requests = 0

    def _order(self) -> list[str]:
        return self.hubs[self._good:] + self.hubs[: self._good]

    async def _get(self, path: str, max_size: int, *, conditional: bool) -> bytes | None:
        errors = []
        for hub in self._order():
            headers = {}
            if conditional and hub in self._etags:
                headers["If-None-Match"] = self._etags[hub]
            self.requests += 1
            try:
                with trio.fail_after(self.timeout_s * 3):
                    resp = await self.client.get(f"{hub}/{path}", max_size=max_size,
                                                 headers=headers)
            except HttpStatusError as exc:
                if exc.status == 304:
                    self._good = self.hubs.index(hub)
                    return None
                if exc.status == 404 and not conditional:
                    self._good = self.hubs.index(hub)
                    return None
                errors.append(f"{hub}: HTTP {exc.status}")
                continue
            except (HttpError, trio.TooSlowError) as exc:
                errors.append(f"{hub}: {exc or type(exc).__name__}")
                continue
            self._good = self.hubs.index(hub)
            etag = resp.headers.get("etag")
            if conditional and etag:
                self._etags[hub] = etag
            return resp.body
        raise HubsUnreachable("no hub answered: " + "; ".join(errors))

    async def manifest(self) -> bytes | None:
        return await self._get(f"channels/{self.channel}/manifest", MAX_MANIFEST_BYTES,
                               conditional=True)

    async def root(self, version: int) -> bytes | None:
        return await self._get(f"roots/{version}.root", MAX_ROOT_BYTES, conditional=False)

    async def flist(self, pin: FlistPin) -> bytes:
        return await self.fetcher.fetch_flist(pin.id, max_size=pin.size)

    async def heartbeat(self, data: bytes) -> None:
        errors = []
        for hub in self._order():
            origin, _ = PostOrigin.from_url(hub)
            conn = HttpConnection(origin, timeout_s=self.timeout_s, max_body=64 * 1024)
            try:
                reply = await conn.request(
                    "POST", "/api/v1/heartbeat", body=data,
                    headers=[("content-type", "application/cbor")],
                )
            except RequestError as exc:
                errors.append(str(exc))
                continue
            finally:
                await conn.aclose()
            if reply.status in (200, 204):
                return
            errors.append(f"{hub}: HTTP {reply.status}")
        raise HubsUnreachable("heartbeat not accepted: " + "; ".join(errors))


# -- real I/O: materialising an flist ---------------------------------------------------------


class _Held:
    """Blocks already fetched and checked, handed to the synchronous extractor."""

    def __init__(self, blocks: dict[str, bytes]) -> None:
        self.blocks = blocks

    def get(self, ref: BlockRef) -> bytes:
        return self.blocks[ref.id]


class ExtractMounter:
    """Materialise an flist into a directory (tmpfs on a node) through the block cache.

    Blocks the cache already holds are not fetched again, which is what makes
    an upgrade cost only its changed blocks. Every block is verified by the
    fetcher (its hash) and again by the extractor before a byte is written.
    """

    def __init__(self, fetcher: Fetcher, cache: BlockCache, say: Say | None = None) -> None:
        self.fetcher = fetcher
        self.cache = cache
        self.say = say
        self.fetched_blocks = 0  # over the agent's life: what upgrades cost
        self.fetched_bytes = 0

    async def serve(
        self,
        pin: FlistPin,
        flist: bytes,
        where: Path,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        view = FlistView.from_bytes(flist)
        blocks: dict[str, bytes] = {}
        fetched = [0, 0]

        def fetcher_for(ref: BlockRef) -> Callable[[], Awaitable[bytes]]:
            async def fetch() -> bytes:
                data = await self.fetcher.fetch_block(ref.id, max_size=ref.stored_size)
                fetched[0] += 1
                fetched[1] += len(data)
                return data

            return fetch

        for ref in view.flist.blocks().values():
            blocks[ref.id] = await self.cache.get_or_fetch(ref.id, fetcher_for(ref))
        self.fetched_blocks += fetched[0]
        self.fetched_bytes += fetched[1]
        if self.say is not None:
            self.say(f"flist {pin.name} {pin.id[:12]}: {len(blocks)} blocks, fetched "
                     f"{fetched[0]} ({fetched[1]} bytes), the rest from the cache")
        sealed = False
        try:
            await trio.to_thread.run_sync(extract, view, _Held(blocks), where)
            blocks.clear()
            # Root (every service on a node) could otherwise rewrite verified
            # files after the check: the tree becomes a read-only bind mount.
            sealed = seal_readonly(where)
            task_status.started()
            await trio.sleep_forever()
        finally:
            if sealed:
                detach(where)
            shutil.rmtree(where, ignore_errors=True)


_MS_RDONLY, _MS_REMOUNT, _MS_BIND = 1, 32, 4096


def seal_readonly(path: Path) -> bool:
    """Bind-mount `path` onto itself read-only; False when not root (nothing to seal with)."""
    if os.geteuid() != 0:
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    target = os.fsencode(path)
    if libc.mount(target, target, None, _MS_BIND, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bind mount of {path}: {os.strerror(err)}")
    if libc.mount(None, target, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY, None) != 0:
        err = ctypes.get_errno()
        detach(path)
        raise OSError(err, f"read-only remount of {path}: {os.strerror(err)}")
    return True


class FuseChildMounter:
    """Mount each flist through FUSE in a child process of its own.

    pyfuse3 serves one mount per process, and an upgrade needs the old and
    the new release mounted at once, so each flist gets a child: `command`
    (an argv prefix) plus `--flist-file F --cache DIR [--mirror URL]... MOUNTPOINT`.
    The child prints a line containing `mounted` once the mount is live and
    unmounts on SIGTERM. Children share the block cache directory, so a block
    one release fetched is not fetched again for the next. The flist file is
    the one `Hubs.flist` already checked against the pinned id.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        mirrors: Sequence[str],
        cache_dir: Path,
        flist_dir: Path,
        say: Say | None = None,
        start_timeout_s: float = 30.0,
    ) -> None:
        self.command = list(command)
        self.mirrors = list(mirrors)
        self.cache_dir = cache_dir
        self.flist_dir = flist_dir
        self.say = say
        self.start_timeout_s = start_timeout_s

    async def serve(
        self,
        pin: FlistPin,
        flist: bytes,
        where: Path,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self.flist_dir.mkdir(parents=True, exist_ok=True)
        path = self.flist_dir / pin.id
        if not path.exists():
            tmp = path.with_name(f".{pin.id}.tmp")
            tmp.write_bytes(flist)
            tmp.rename(path)
        argv = [*self.command, "--flist-file", str(path), "--cache", str(self.cache_dir)]
        for mirror in self.mirrors:
            argv += ["--mirror", mirror]
        argv.append(str(where))
        proc = await trio.lowlevel.open_process(
            # Same process group as the agent: a signal to the group reaches it too.
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        assert proc.stdout is not None
        try:
            seen = b""
            with trio.move_on_after(self.start_timeout_s):
                while b"mounted" not in seen:
                    chunk = await proc.stdout.receive_some(4096)
                    if not chunk:
                        break
                    seen = (seen + chunk)[-8192:]
            if b"mounted" not in seen:
                text = seen.decode(errors="replace").strip()[-300:]
                raise ReleaseFailed(f"FUSE mount of {pin.name} at {where} failed: {text}")
            if self.say is not None:
                self.say(f"flist {pin.name} {pin.id[:12]}: FUSE mount at {where} "
                         f"(pid {proc.pid})")
            task_status.started()
            # Keep draining the child's output so it never blocks on a full pipe.
            while await proc.stdout.receive_some(4096):
                pass
            await proc.wait()
            # Not fatal to the agent: the release's services will fail and be reported.
            if self.say is not None:
                self.say(f"flist {pin.name}: FUSE mount at {where} ended "
                         f"(exit {proc.returncode})")
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await _end_child(proc)
                if os.path.ismount(where):
                    detach(where)


async def _end_child(proc: trio.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        with trio.move_on_after(5):
            await proc.wait()
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


# -- the hook `zosnode node run` calls once the network is up -------------------------------


def _lease_addresses(network: Network) -> list[str]:
    return [f"{lease.address}/{lease.prefixlen}" for lease in network.leases.values()]


async def after_network(
    config: Config,
    network: Network,
    say: Say,
    *,
    anchor: Anchor | None = None,
    run_dir: Path = Path("/run/zosnode"),
    cache_dir: Path | None = None,
    cache_bytes: int = 512 * 1024 * 1024,
    settings: BootSettings | None = None,
    fuse_command: Sequence[str] | None = None,
    task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Boot the release and keep the node up to date; never returns.

    The trust anchor is the one compiled into the artifact; `anchor` exists for
    callers that embed the agent (tests, benchmarks), never for the command
    line. `cache_dir` is a disk cache when the node has one: it then also keeps
    the node key; without it the node id lives in RAM. With `fuse_command`
    flists are FUSE mounts served by child processes (`FuseChildMounter`);
    without it they are extracted into `run_dir` (a tmpfs on a node).
    """
    trusted = anchor if anchor is not None else load_embedded()
    if trusted is None:
        raise BootError("this build carries no trust anchor (build_zipapp.py --anchor)")
    if not config.hubs:
        raise BootError("no hub given: boot with zos.hub=http://HOST:PORT")
    settings = settings or BootSettings(
        channel=config.channel, farm=config.farm or "", run_dir=run_dir,
        agent_version=__version__,
    )
    identity = load_or_create(cache_dir)
    say(f"node id {identity.node_id} ({identity.source})")
    run_dir.mkdir(parents=True, exist_ok=True)
    blocks_dir = cache_dir / "blocks" if cache_dir else run_dir / "blocks"
    cache = BlockCache(blocks_dir, cache_bytes, durable=cache_dir is not None)
    fetcher = Fetcher(config.hubs)
    hubs = HubClient(config.hubs, config.channel, fetcher=fetcher)
    mounter: Mounter
    if fuse_command:
        mounter = FuseChildMounter(fuse_command, mirrors=config.hubs, cache_dir=blocks_dir,
                                   flist_dir=run_dir / "flists", say=say)
    else:
        mounter = ExtractMounter(fetcher, cache, say)
    board = StatusBoard()
    board.update(addresses=tuple(_lease_addresses(network)))
    node = Node(
        settings, anchor=trusted, identity=identity, hubs=hubs,
        mounter=mounter, board=board, say=say,
        addresses=lambda: _lease_addresses(network),
        audit=lambda: [f.describe() for f in network.audit_findings],
    )

    def draw(text: str) -> None:
        for line in text.splitlines():
            say(line)

    async def follow_network() -> None:
        while True:
            await network.changed.wait()
            board.update(addresses=tuple(_lease_addresses(network)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow_network)
        await nursery.start(console_task, board, draw)
        await nursery.start(node.run)
        task_status.started(node)
