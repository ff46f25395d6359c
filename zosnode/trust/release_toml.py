"""What a release engineer writes (TOML) turned into a `Manifest`.

    channel = "stable"
    version = 7
    expires_in_days = 30          # or expires_at = <unix s>; issued_at defaults to now
    min_agent_version = "0.1.0"
    rollout_ppm = 1000000
    hubs = ["https://hub.example"]
    mirrors = []

    [[flists]]
    name = "base"                 # resolved to an id and size by the caller
    tag = "base-2026-11"          # optional: the store tag to resolve (default: name)
    mount = "/opt/base"

    [[services]]
    name = "web"
    flist = "base"
    argv = ["/usr/bin/web", "--port", "80"]
    env = { MODE = "prod" }
    after = []
    oneshot = false
    ready = ["/usr/bin/check"]    # omit: ready once started
    restart_initial_ms = 500
    restart_max_ms = 30000
    stop_signal = "SIGTERM"
    stop_timeout_ms = 10000

    [metadata]                    # free form; no floats or dates
    notes = "anything"

Pure: the caller reads the file and resolves flist names. Every mistake is a
`TrustUsageError` naming the file (the caller says its name) and the key at
fault; unknown keys are refused so a typo cannot silently drop a setting.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from typing import Any

from zosnode.trust.errors import TrustUsageError
from zosnode.trust.manifest import PPM, FlistPin, Manifest, ServiceSpec

DAY = 86_400
# name -> (flist id, flist size in bytes)
Resolver = Callable[[str], tuple[str, int]]

_TOP = {
    "channel", "version", "issued_at", "expires_at", "expires_in_days", "min_agent_version",
    "rollout_ppm", "hubs", "mirrors", "flists", "services", "metadata",
}
_FLIST = {"name", "tag", "mount"}
_SERVICE = {
    "name", "flist", "argv", "env", "after", "oneshot", "ready", "restart_initial_ms",
    "restart_max_ms", "stop_signal", "stop_timeout_ms",
}


class _Table:
    def __init__(self, value: Any, where: str, known: set[str]) -> None:
        if not isinstance(value, dict):
            raise TrustUsageError(f"{where}: expected a table")
        unknown = sorted(set(value) - known)
        if unknown:
            raise TrustUsageError(f"{where}: unknown key {unknown[0]!r}")
        self.value: dict[str, Any] = value
        self.where = where

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if name not in self.value:
            if default is ...:
                raise TrustUsageError(f"{self.where}: missing {name!r}")
            return default
        got = self.value[name]
        if not isinstance(got, kind) or (isinstance(got, bool) and kind is int):
            raise TrustUsageError(f"{self.where}.{name}: wrong type {type(got).__name__}")
        return got

    def strings(self, name: str, default: Any = ...) -> Any:
        got = self.get(name, list, default)
        if got is not None and not all(isinstance(s, str) for s in got):
            raise TrustUsageError(f"{self.where}.{name}: expected a list of strings")
        return None if got is None else tuple(got)


def parse(text: str, resolve: Resolver, now: int, *, source: str) -> Manifest:
    """The manifest `text` describes; `source` names it in every error (`source: ...`)."""
    try:
        return _parse(text, resolve, now)
    except TrustUsageError as exc:
        raise TrustUsageError(f"{source}: {exc}") from None


def _parse(text: str, resolve: Resolver, now: int) -> Manifest:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TrustUsageError(f"invalid TOML: {exc}") from None
    top = _Table(doc, "release", _TOP)
    issued_at = top.get("issued_at", int, now)
    if "expires_at" in doc and "expires_in_days" in doc:
        raise TrustUsageError("release: give expires_at or expires_in_days, not both")
    expires_at = top.get("expires_at", int, None)
    if expires_at is None:
        expires_at = issued_at + top.get("expires_in_days", int, 30) * DAY
    pins = []
    for i, raw in enumerate(top.get("flists", list, [])):
        t = _Table(raw, f"flists[{i}]", _FLIST)
        name = t.get("name", str)
        fid, size = resolve(t.get("tag", str, name))
        pins.append(FlistPin(name, fid, size, t.get("mount", str)))
    services = [_service(i, raw) for i, raw in enumerate(top.get("services", list, []))]
    metadata = top.get("metadata", dict, {})
    _check_plain(metadata, "metadata")
    return Manifest(
        channel=top.get("channel", str),
        version=top.get("version", int),
        issued_at=issued_at,
        expires_at=expires_at,
        min_agent_version=top.get("min_agent_version", str, "0"),
        rollout_ppm=top.get("rollout_ppm", int, PPM),
        hubs=top.strings("hubs", ()),
        mirrors=top.strings("mirrors", ()),
        flists=tuple(pins),
        services=tuple(services),
        metadata=metadata,
    )


def _service(i: int, raw: Any) -> ServiceSpec:
    t = _Table(raw, f"services[{i}]", _SERVICE)
    defaults = ServiceSpec("x", "x", ("x",))
    env = t.get("env", dict, {})
    if not all(isinstance(v, str) for v in env.values()):
        raise TrustUsageError(f"services[{i}].env: values must be strings")
    return ServiceSpec(
        name=t.get("name", str),
        flist=t.get("flist", str),
        argv=t.strings("argv"),
        env=env,
        after=t.strings("after", ()),
        oneshot=t.get("oneshot", bool, False),
        ready=t.strings("ready", None),
        restart_initial_ms=t.get("restart_initial_ms", int, defaults.restart_initial_ms),
        restart_max_ms=t.get("restart_max_ms", int, defaults.restart_max_ms),
        stop_signal=t.get("stop_signal", str, defaults.stop_signal),
        stop_timeout_ms=t.get("stop_timeout_ms", int, defaults.stop_timeout_ms),
    )


def _check_plain(value: Any, where: str) -> None:
    """Refuse TOML values canonical CBOR cannot carry (floats, dates)."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_plain(v, f"{where}.{k}")
    elif isinstance(value, list):
        for j, v in enumerate(value):
            _check_plain(v, f"{where}[{j}]")
    elif not isinstance(value, (str, int, bool)):
        raise TrustUsageError(
            f"{where}: {type(value).__name__} values are not allowed (no floats or dates; "
            "use integers or strings)"
        )
