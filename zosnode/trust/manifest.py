"""The release manifest (kind "manifest"): all a node runs, signed; its body the canonical CBOR of
the dataclasses' fields and "spec": 1, no floats (canonical CBOR refuses them: durations in ms,
rollout in ppm). Each value is checked when its dataclass is built; encoding: `trust.signing`."""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

from zosnode import canonical
from zosnode.layout import is_hex_id
from zosnode.trust.errors import MalformedError, OversizeError, TrustUsageError, need
from zosnode.trust.schema import MAX_INT, Fields, versioned

SPEC = 1
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_METADATA_BYTES = 16 * 1024
MAX_FLISTS = 1024
MAX_SERVICES = 256
MAX_URLS = 32
MAX_FLIST_BYTES = 1 << 36
PPM = 1_000_000
NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
AGENT_VERSION_RE = re.compile(r"\d{1,9}(\.\d{1,9}){0,3}")
URL_RE = re.compile(r"https?://[^\s\x00]{1,2040}")
STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGKILL", "SIGUSR1", "SIGUSR2")


def _name(what: str, value: str) -> None:
    need(NAME_RE.fullmatch(value) is not None, f"{what} {value!r} must match {NAME_RE.pattern}")


def _argv(what: str, argv: tuple[str, ...]) -> None:
    need(len(argv) >= 1 and all(isinstance(a, str) and "\x00" not in a for a in argv),
          f"{what} must be a non-empty list of strings without NUL")
    need(argv[0] != "", f"{what}[0] is empty")


def agent_version_tuple(version: str) -> tuple[int, ...]:
    if AGENT_VERSION_RE.fullmatch(version) is None:
        raise TrustUsageError(f"agent version {version!r} is not dotted integers like 1.2.3")
    return tuple(int(p) for p in version.split("."))


@dataclass(frozen=True)
class FlistPin:
    name: str
    id: str
    size: int
    mount: str

    def __post_init__(self) -> None:
        _name("flist name", self.name)
        need(is_hex_id(self.id), f"flist {self.name}: id {self.id!r} is not 64 lowercase hex")
        need(isinstance(self.size, int) and 1 <= self.size <= MAX_FLIST_BYTES,
              f"flist {self.name}: size {self.size} is outside 1..{MAX_FLIST_BYTES}")
        parts = self.mount.split("/")
        need(self.mount.startswith("/") and len(self.mount) <= 4096 and "\x00" not in self.mount
              and (self.mount == "/" or all(p not in ("", ".", "..") for p in parts[1:])),
              f"flist {self.name}: mount {self.mount!r} must be a normalised absolute path")


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    flist: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    after: tuple[str, ...] = ()
    oneshot: bool = False
    ready: tuple[str, ...] | None = None
    restart_initial_ms: int = 500
    restart_max_ms: int = 30_000
    stop_signal: str = "SIGTERM"
    stop_timeout_ms: int = 10_000

    def __post_init__(self) -> None:
        _name("service name", self.name)
        it = f"service {self.name}:"
        _name(f"{it} flist", self.flist)
        _argv(f"{it} argv", self.argv)
        if self.ready is not None:
            _argv(f"{it} ready", self.ready)
        for k, v in self.env.items():
            need(isinstance(k, str) and isinstance(v, str) and k != "" and "=" not in k
                 and "\x00" not in k + v, f"{it} bad environment entry {k!r}")
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))
        for dep in self.after:
            _name(f"{it} dependency", dep)
        need(len(set(self.after)) == len(self.after) and self.name not in self.after,
             f"{it} dependencies repeat or name itself")
        need(0 <= self.restart_initial_ms <= self.restart_max_ms <= 86_400_000,
             f"{it} need 0 <= restart_initial_ms <= restart_max_ms <= 1 day")
        need(self.stop_signal in STOP_SIGNALS,
             f"{it} stop_signal {self.stop_signal!r} is not one of {', '.join(STOP_SIGNALS)}")
        need(0 <= self.stop_timeout_ms <= 3_600_000, f"{it} stop_timeout_ms must be 0..3600000")


@dataclass(frozen=True)
class Manifest:
    channel: str
    version: int
    issued_at: int
    expires_at: int
    min_agent_version: str = "0"
    rollout_ppm: int = PPM
    hubs: tuple[str, ...] = ()
    mirrors: tuple[str, ...] = ()
    flists: tuple[FlistPin, ...] = ()
    services: tuple[ServiceSpec, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _name("channel", self.channel)
        need(1 <= self.version <= MAX_INT, f"version {self.version} must be at least 1")
        need(0 <= self.issued_at < self.expires_at <= MAX_INT,
              f"need 0 <= issued_at ({self.issued_at}) < expires_at ({self.expires_at})")
        agent_version_tuple(self.min_agent_version)
        need(0 <= self.rollout_ppm <= PPM, f"rollout_ppm {self.rollout_ppm} is outside 0..{PPM}")
        for what, urls in (("hubs", self.hubs), ("mirrors", self.mirrors)):
            need(len(urls) <= MAX_URLS, f"more than {MAX_URLS} {what}")
            for url in urls:
                need(URL_RE.fullmatch(url) is not None, f"{what}: {url!r} is not an http(s) URL")
        need(len(self.flists) <= MAX_FLISTS, f"more than {MAX_FLISTS} flists")
        need(len(self.services) <= MAX_SERVICES, f"more than {MAX_SERVICES} services")
        names = [p.name for p in self.flists]
        need(len(set(names)) == len(names), "two flists share a name")
        mounts = [p.mount for p in self.flists]
        need(len(set(mounts)) == len(mounts), "two flists share a mount point")
        for s in self.services:
            need(s.flist in names, f"service {s.name} runs from flist {s.flist!r}, not pinned")
        start_order(self.services)
        try:
            encoded = canonical.dumps(dict(self.metadata))
        except canonical.CanonicalError as exc:
            raise TrustUsageError(f"metadata: {exc}") from None
        need(len(encoded) <= MAX_METADATA_BYTES,
              f"metadata is {len(encoded)} bytes, over the {MAX_METADATA_BYTES}-byte cap")
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))


_PIN = tuple(f.name for f in fields(FlistPin))
_SERVICE = tuple(f.name for f in fields(ServiceSpec))
_TOP = ("spec", *(f.name for f in fields(Manifest)))


def start_order(services: Sequence[ServiceSpec]) -> tuple[str, ...]:
    """Names, dependencies first, else in manifest order; the one check of repeats and cycles."""
    by_name = {s.name: s for s in services}
    need(len(by_name) == len(services), "two services share a name")
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise TrustUsageError("service dependency cycle: " + " -> ".join((*path, name)))
        state[name] = 1
        for dep in by_name[name].after:
            need(dep in by_name, f"service {name} depends on unknown service {dep!r}")
            visit(dep, (*path, name))
        state[name] = 2
        order.append(name)

    for name in by_name:
        visit(name, ())
    return tuple(order)


def decode_body(body: bytes) -> Manifest:
    """Parse a manifest body that has already passed signature checks."""
    f = versioned(body, "manifest", _TOP, spec=SPEC, max_size=MAX_MANIFEST_BYTES, max_depth=32)
    metadata = f.get("metadata", dict)
    size = len(canonical.dumps(metadata))
    if size > MAX_METADATA_BYTES:
        raise OversizeError(f"manifest metadata is {size} bytes, over the "
                            f"{MAX_METADATA_BYTES}-byte cap")
    try:
        pins = tuple(_decode_pin(i, v)
                     for i, v in enumerate(f.get("flists", list)[: MAX_FLISTS + 1]))
        services = tuple(_decode_service(i, v)
                         for i, v in enumerate(f.get("services", list)[: MAX_SERVICES + 1]))
        # Ranges (version from 1, rollout to PPM, a pin's size) are the dataclasses' checks.
        return Manifest(channel=f.get("channel", str), version=f.integer("version"),
                        issued_at=f.integer("issued_at"), expires_at=f.integer("expires_at"),
                        min_agent_version=f.get("min_agent_version", str), hubs=f.str_list("hubs"),
                        rollout_ppm=f.integer("rollout_ppm"), mirrors=f.str_list("mirrors"),
                        flists=pins, services=services, metadata=metadata)
    except TrustUsageError as exc:
        raise MalformedError(f"manifest: {exc}") from None


def _decode_pin(i: int, value: Any) -> FlistPin:
    f = Fields(value, f"manifest.flists[{i}]", _PIN)
    return FlistPin(f.get("name", str), f.get("id", str), f.integer("size"), f.get("mount", str))


def _decode_service(i: int, value: Any) -> ServiceSpec:
    f = Fields(value, f"manifest.services[{i}]", _SERVICE)
    return ServiceSpec(
        name=f.get("name", str), flist=f.get("flist", str), argv=f.str_list("argv"),
        env=f.str_map("env"), after=f.str_list("after"), oneshot=f.get("oneshot", bool),
        ready=f.optional_str_list("ready"), restart_initial_ms=f.integer("restart_initial_ms"),
        restart_max_ms=f.integer("restart_max_ms"), stop_signal=f.get("stop_signal", str),
        stop_timeout_ms=f.integer("stop_timeout_ms"))
