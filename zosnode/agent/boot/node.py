"""Manifest -> mounts -> services -> ready -> heartbeats, then upgrades; a hub down only delays the
boot. Releases mount side by side at `run_dir/<version>/<flist>` (relative argv resolve there)."""

import functools
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from zosnode.agent.boot.errors import HubsUnreachable, ReleaseFailed
from zosnode.agent.boot.hubs import HubClient
from zosnode.agent.boot.mounters import Mounter
from zosnode.agent.bringup import Network
from zosnode.agent.console import StatusBoard, ready_message
from zosnode.agent.identity import NodeIdentity
from zosnode.agent.phases import BootClock, memory_message, phases_message
from zosnode.agent.pid1 import Say
from zosnode.agent.secureboot import node_state as secure_boot_state
from zosnode.agent.services.events import StateChanged
from zosnode.agent.services.runner import ChangeSink, LineSink, ServiceRunner
from zosnode.agent.upgrade import Ignore, IgnoreWhy, PollSchedule, Stage, UpgradePolicy
from zosnode.errors import ZosError
from zosnode.fetch.backoff import Backoff
from zosnode.fetch.errors import FetchError
from zosnode.flist.errors import FlistError
from zosnode.http.errors import HttpError
from zosnode.trust.anchor import Anchor
from zosnode.trust.errors import Refused, TrustError
from zosnode.trust.manifest import Manifest
from zosnode.trust.verifier import Verifier, effective_now
from zosnode.wire import heartbeat as wire


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


def refusal(kind: str, why: str, at: float) -> wire.RefusalReport:
    return wire.RefusalReport(kind, why[:256], max(0, int(at)))


class Release:
    """A manifest's flists mounted and its services running, in one cancel scope."""

    def __init__(self, manifest: Manifest, run_dir: Path) -> None:
        self.manifest = manifest
        self.root = run_dir / str(manifest.version)
        self.mounts = {p.name: self.root / p.name for p in manifest.flists}
        self.runner: ServiceRunner | None = None
        self._scope = trio.CancelScope()
        self._gone = trio.Event()

    async def serve(self, hubs: HubClient, mounter: Mounter, on_change: ChangeSink,
                    on_line: LineSink, *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
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
                    self.runner = ServiceRunner(self.manifest.services, mounts=self.mounts,
                                                on_change=on_change, on_line=on_line)
                    await nursery.start(self.runner.run)
                    task_status.started()
                    await trio.sleep_forever()
        finally:
            self._gone.set()
            shutil.rmtree(self.root, ignore_errors=True)

    async def close(self) -> None:
        if self.runner is not None and not self._gone.is_set():
            await self.runner.stop()
        self._scope.cancel()
        await self._gone.wait()


class Node:
    def __init__(self, settings: BootSettings, *, anchor: Anchor, identity: NodeIdentity,
                 hubs: HubClient, mounter: Mounter, board: StatusBoard, say: Say,
                 network: Network, boot: BootClock, hardware: wire.HardwareReport,
                 cache_report: Callable[[], wire.CacheReport | None]) -> None:
        self.settings = settings
        self.anchor = anchor
        self.verifier = Verifier(anchor)
        self.identity = identity
        self.hubs, self.mounter, self.board, self.say = hubs, mounter, board, say
        self.network = network
        self.boot = boot  # each phase's end, in ms from the agent's start (heartbeats carry it)
        self.hardware = hardware
        self._cache_report = cache_report  # blocking: run in a thread
        self._rng = random.SystemRandom()
        self.policy = UpgradePolicy(identity.node_id)
        self.current: Release | None = None
        self.refusals: dict[str, wire.RefusalReport] = {}  # the last of each kind
        self.failed_release: int | None = None
        self._t0 = trio.current_time()
        self._nursery: trio.Nursery  # from run()
        self._heartbeat_now = trio.Event()
        self._last_sent = 0
        self._pending: Manifest | None = None  # verified, not staged yet (hubs failed us)

    def _ms(self) -> int:
        return round((trio.current_time() - self._t0) * 1000)

    def _error(self, text: str) -> None:
        self.say(text)
        self.board.fail(text, trio.current_time())

    def _on_change(self, release: Release, ch: StateChanged) -> None:
        if self.current is release and release.runner is not None:
            self.board.update(services=release.runner.status())
        self.say(f"v{release.manifest.version} {ch.name}: {ch.state.value} ({ch.detail})")

    async def _verified(self, data: bytes) -> Manifest:
        refresh = self.verifier.refresh()
        while (wanted := refresh.wanted()) is not None:
            root = await self.hubs.root(wanted)
            if root is None:
                break
            refresh.received(root)
        now = effective_now(int(time.time()), self.anchor)
        refresh.finish(now)
        return self.verifier.verify_manifest(data, channel=self.settings.channel, now=now,
                                             agent_version=self.settings.agent_version).manifest

    async def _boot(self) -> tuple[Release, str | None]:
        """Until a verified manifest's release runs: it, with None or why it is not ready."""
        attempt = 0
        while True:
            try:
                data = await self.hubs.manifest()
                why = "hub said not modified before we had a manifest"
                if data is not None:
                    manifest = await self._verified(data)
                    self.board.resolve()
                    self.boot.mark("manifest")
                    stage = self.policy.offer(manifest)
                    assert isinstance(stage, Stage)  # at boot any verified version goes
                    self.board.update(phase=f"starting release {manifest.version}")
                    release, problem = await self._bring_up(manifest)
                    if release.runner is not None:
                        return release, problem
                    # Nothing ran (flists out of reach): no verdict on the release; start over.
                    await release.close()
                    self.policy = UpgradePolicy(self.identity.node_id)
                    why = f"release {manifest.version}: {problem}"
            except HubsUnreachable as exc:
                why = str(exc)
            except Refused as exc:
                why = f"manifest refused: {exc}"
                self.refusals["manifest"] = refusal("manifest", str(exc), time.time())
            delay = self.settings.boot_backoff.delay(attempt, self._rng.random())
            attempt += 1
            self._error(f"{why}; retry in {delay:.1f} s")
            await trio.sleep(delay)

    async def _bring_up(self, manifest: Manifest) -> tuple[Release, str | None]:
        """Start `manifest` beside whatever runs; return it with None, or with why it failed."""
        # Its own hubs and mirrors serve its flists (it is signed; hashes decide).
        self.hubs.adopt(manifest)
        release = Release(manifest, self.settings.run_dir)
        deadline = trio.current_time() + self.settings.readiness_deadline_ms / 1000
        try:
            with trio.fail_at(deadline):
                await self._nursery.start(release.serve, self.hubs, self.mounter,
                                          functools.partial(self._on_change, release),
                                          lambda name, line: self.say(f"[{name}] {line}"))
        except ReleaseFailed as exc:
            return release, str(exc)
        except trio.TooSlowError:
            return release, "flists not mounted within the readiness deadline"
        self.boot.mark("mounts")
        runner = release.runner
        assert runner is not None
        with trio.move_on_at(deadline):
            if await runner.wait_settled():
                return release, None
            return release, "services never became ready: " + ", ".join(
                f"{s.name} {s.state.value} ({s.detail})"
                for s in runner.status() if s.name in runner.dead_ends)
        return release, f"not ready within {self.settings.readiness_deadline_ms} ms: " + ", ".join(
            s.name for s in runner.status() if s.state.value not in ("ready", "done"))

    def _became_current(self, release: Release) -> None:
        self.policy.staged_ready()  # at boot even if degraded: there is nothing to return to
        self.current = release
        assert release.runner is not None
        self.board.update(release=release.manifest.version, services=release.runner.status())

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            release, why = await self._boot()
            manifest = release.manifest
            self._became_current(release)
            self.boot.mark("services")
            if why is None:
                self.board.resolve()
                self.board.update(phase="ready")
                self.boot.mark("ready")
                self.say(ready_message(manifest.version, self.identity.node_id))
                self.say(phases_message(self.boot.ends))
                self.say(memory_message())
            else:
                # Up and reporting, but not ready: a newer release may fix it.
                self.failed_release = manifest.version
                self._error(f"release {manifest.version} is degraded: {why}")
                self.board.update(phase="degraded")
                self.say(f"degraded {manifest.version} {self.identity.node_id}")
            nursery.start_soon(self._heartbeats)
            task_status.started()
            while True:
                at = self.settings.poll.next_poll(self._ms(), self._rng.random())
                await trio.sleep_until(self._t0 + at / 1000)
                try:
                    await self.poll_once()
                except ZosError as exc:
                    # Reported, never a reason to drop the release (bugs still end the agent).
                    self._error(f"upgrade poll failed: {type(exc).__name__}: {exc}")

    async def poll_once(self) -> None:
        try:
            data = await self.hubs.manifest()
            # Unchanged: a release we could not stage (out of reach) is tried again.
            manifest = self._pending if data is None else await self._verified(data)
        except HubsUnreachable as exc:
            self._error(f"upgrade poll: {exc}; keeping release {self.policy.current}")
            return
        except Refused as exc:
            why = f"{type(exc).__name__}: {exc}"
            self.refusals["manifest"] = refusal("manifest", why, time.time())
            self._error(f"manifest refused: {why}")
            return
        self.board.resolve()  # the hubs answered and what they sent passed
        if manifest is None:
            return
        self._pending = None
        decision = self.policy.offer(manifest)
        if isinstance(decision, Ignore):
            if decision.why not in (IgnoreWhy.SAME, IgnoreWhy.OLDER, IgnoreWhy.BUSY):  # news
                self.say(decision.describe())
            return
        await self._upgrade(manifest)

    async def _upgrade(self, manifest: Manifest) -> None:
        old = self.current
        assert old is not None  # run() makes the boot's release current before any poll
        self.board.update(phase=f"upgrading to {manifest.version}")
        self.say(f"upgrading {self.policy.current} -> {manifest.version}")
        new, why = await self._bring_up(manifest)
        if why is None:
            self._became_current(new)
            await old.close()
            self.board.update(phase="ready")
            self.say(ready_message(manifest.version, self.identity.node_id))
            self._heartbeat_now.set()
            return
        await new.close()
        self.hubs.adopt(old.manifest)
        self.board.update(phase="ready")
        if new.runner is None:
            # Nothing of it ran: the hubs failed us, not the release; retry at the next poll.
            self.policy.abandon()
            self._pending = manifest
            self._error(f"release {manifest.version} could not be staged: {why}; keeping "
                        f"release {self.policy.current}, retrying at the next poll")
            return
        rollback = self.policy.staged_failed()
        self.failed_release = rollback.version
        self._error(f"release {rollback.version} failed, back on {rollback.to_version}: {why}")
        self._heartbeat_now.set()

    def heartbeat(self, cache: wire.CacheReport | None = None) -> wire.Heartbeat:
        running = self.current.runner if self.current is not None else None
        found = dict(self.refusals)
        if self.network.last_refusal is not None:
            found["dhcp"] = refusal("dhcp", *self.network.last_refusal)
        if incidents := self.hubs.fetcher.health.incidents:
            last = incidents[-1]
            found["mirror"] = refusal(
                "mirror", f"{last.mirror} served a wrong copy of {last.object_id}",
                time.time() - (trio.current_time() - last.at))
        # The hub keeps only a heartbeat newer than the last: two in one second must differ.
        self._last_sent = max(int(time.time()), self._last_sent + 1)
        return wire.Heartbeat(
            node_id=self.identity.node_id, farm=self.settings.farm, uptime_s=self._ms() // 1000,
            channel=self.settings.channel, release=self.policy.current or 0,
            agent_version=self.settings.agent_version, sent_at=self._last_sent,
            services=tuple(wire.ServiceState(s.name, s.state.value, s.restarts)
                           for s in (running.status() if running is not None else ())),
            addresses=tuple(self.network.addresses()),
            audit=tuple(f.describe() for f in self.network.audit_findings),
            failed_release=self.failed_release, boot_timings_ms=dict(self.boot.ends),
            identity_source=self.identity.source, hardware=self.hardware, cache=cache,
            refusals=tuple(found[k] for k in sorted(found)), secure_boot=secure_boot_state())

    async def _heartbeats(self) -> None:
        while True:
            try:
                cache = await trio.to_thread.run_sync(self._cache_report)
            except (OSError, ZosError) as exc:
                self.say(f"cache report: {exc}")
                cache = None
            try:
                signed = wire.encode_signed(self.heartbeat(cache), self.identity.signing_key)
                await self.hubs.heartbeat(signed)
            except HubsUnreachable as exc:
                self._error(f"heartbeat: {exc}")
            else:
                if (self.board.status.error or "").startswith("heartbeat:"):
                    self.board.resolve()
            with trio.move_on_after(self.settings.heartbeat_interval_s):
                await self._heartbeat_now.wait()
            self._heartbeat_now = trio.Event()
