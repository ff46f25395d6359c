"""When to upgrade and whether to keep it, sans-IO: `offer` a verified manifest, `Ignore` it or
`Stage` it, then `staged_ready()`, `staged_failed()` (never staged again) or `abandon()` (it never
ran: no verdict). Rollouts and their signed steering (`zos.rollout`): docs/hub-api.md."""

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from zosnode.errors import UsageError
from zosnode.trust.manifest import PPM, Manifest


class UpgradeUsageError(UsageError):
    """The caller drove the policy wrongly (no staged release, bad schedule)."""


def rollout_slot(node_id: str, channel: str, version: int) -> int:
    key = f"zosnode-rollout\x00{node_id}\x00{channel}\x00{version}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") % PPM


ROLLOUT_KEY = "zos.rollout"


def _rollout_meta(manifest: Manifest) -> Mapping[str, object]:
    raw = manifest.metadata.get(ROLLOUT_KEY)
    return raw if isinstance(raw, Mapping) else {}


def rollout_release(manifest: Manifest) -> int:
    """The version whose contents this manifest carries (malformed: a plain release)."""
    of = _rollout_meta(manifest).get("of")
    if isinstance(of, int) and not isinstance(of, bool) and 1 <= of <= manifest.version:
        return of
    return manifest.version


def rollout_paused(manifest: Manifest) -> bool:
    return _rollout_meta(manifest).get("paused") is True


def in_rollout(node_id: str, manifest: Manifest) -> bool:
    return rollout_slot(node_id, manifest.channel, rollout_release(manifest)) < manifest.rollout_ppm


@dataclass(frozen=True)
class PollSchedule:
    interval_ms: int = 60_000
    jitter_ms: int = 10_000

    def __post_init__(self) -> None:
        if not 0 <= self.jitter_ms < self.interval_ms:
            raise UpgradeUsageError("need 0 <= jitter_ms < interval_ms")

    def next_poll(self, now_ms: int, draw: float) -> int:
        if not 0.0 <= draw < 1.0:
            raise UpgradeUsageError("draw must be in [0, 1)")
        return now_ms + self.interval_ms - self.jitter_ms + int(2 * self.jitter_ms * draw)


class IgnoreWhy(enum.Enum):
    SAME = "already running"
    OLDER = "older than the running release"
    FAILED_BEFORE = "failed readiness on this node before"
    OUTSIDE_ROLLOUT = "this node is outside the staged rollout"
    PAUSED = "the rollout is paused"
    BUSY = "another upgrade is in progress"


@dataclass(frozen=True)
class Ignore:
    version: int
    why: IgnoreWhy

    def describe(self) -> str:
        return f"release {self.version} not applied: {self.why.value}"


@dataclass(frozen=True)
class Stage:
    manifest: Manifest


@dataclass(frozen=True)
class Rollback:
    version: int
    to_version: int | None


class UpgradePolicy:
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.current: int | None = None
        # rollout_release of the running manifest: a re-issue of it is no upgrade.
        self.current_release: int | None = None
        self._staged: Stage | None = None
        self._failed: set[int] = set()  # versions and releases that failed here

    def offer(self, manifest: Manifest) -> Ignore | Stage:
        v = manifest.version
        release = rollout_release(manifest)
        if self._staged is not None:
            return Ignore(v, IgnoreWhy.BUSY)
        if self.current is not None and (v == self.current or release == self.current_release):
            return Ignore(v, IgnoreWhy.SAME)
        if self.current is not None and v < self.current:
            return Ignore(v, IgnoreWhy.OLDER)
        if v in self._failed or release in self._failed:
            return Ignore(v, IgnoreWhy.FAILED_BEFORE)
        # At boot any release goes, whatever the rollout: a node must run something.
        if self.current is not None and rollout_paused(manifest):
            return Ignore(v, IgnoreWhy.PAUSED)
        if self.current is not None and not in_rollout(self.node_id, manifest):
            return Ignore(v, IgnoreWhy.OUTSIDE_ROLLOUT)
        self._staged = Stage(manifest)
        return self._staged

    def staged_ready(self) -> None:
        stage = self._take()
        self.current = stage.manifest.version
        self.current_release = rollout_release(stage.manifest)

    def staged_failed(self) -> Rollback:
        stage = self._take()
        self._failed.update((stage.manifest.version, rollout_release(stage.manifest)))
        return Rollback(stage.manifest.version, self.current)

    def abandon(self) -> Manifest:
        return self._take().manifest

    def _take(self) -> Stage:
        if self._staged is None:
            raise UpgradeUsageError("no release is staged")
        stage, self._staged = self._staged, None
        return stage
