"""The kernel command line over compiled-in defaults: a bad value is reported and ignored (a node
still boots on its defaults); keys naming whom to trust are refused (only the artifact does)."""

import re
import urllib.parse
from dataclasses import dataclass, replace

MAX_CMDLINE = 4096  # the kernel's COMMAND_LINE_SIZE on x86_64 is 2048; be generous
MAX_HUBS = 8
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_IFNAME = re.compile(r"[A-Za-z0-9_.:-]{1,15}")
_CACHE = re.compile(r"auto|LABEL=[A-Za-z0-9_.-]{1,16}|UUID=[0-9a-fA-F-]{32,36}")
_DEVICE = re.compile(r"/dev/[a-z][a-z0-9]{1,31}")  # a whole disk, by kernel name
# zos.<key>=<text>: the Config field, the pattern a value must match, what a bad one is told.
_TEXT_KEYS = {"zos.farm": ("farm", _NAME, "want 1-64 of A-Z a-z 0-9 _ . -"),
              "zos.channel": ("channel", _NAME, "want 1-64 of A-Z a-z 0-9 _ . -"),
              "zos.net": ("net", _IFNAME, "not an interface name"),
              "zos.cache": ("cache", _CACHE, "want auto, LABEL=<label> or UUID=<uuid>"),
              "zos.cache.format": ("cache_format", _DEVICE, "want a disk as /dev/<name>")}
# A word: runs of non-space, a double-quoted run (closed or not) counting as non-space.
_TOKEN = re.compile(r'(?:[^\s"]+|"[^"]*"?)+')
_TRUST_KEYS = ("zos.root", "zos.key", "zos.keys", "zos.anchor", "zos.pubkey", "zos.floor")


@dataclass(frozen=True)
class Config:
    hubs: tuple[str, ...] = ()
    farm: str | None = None
    channel: str = "stable"
    net: str | None = None  # pin this NIC
    debug: bool = False
    cache: str | None = None  # "auto", "LABEL=..." or "UUID=...": the disk block cache
    cache_format: str | None = None  # a blank disk to make the cache on (/dev/...)

    def __post_init__(self) -> None:
        for hub in self.hubs:
            if problem := _hub_problem(hub):
                raise ValueError(f"config: bad hub {hub!r}: {problem}")


DEFAULTS = Config()


@dataclass(frozen=True)
class Parsed:
    config: Config
    notes: tuple[str, ...]  # one console line each: what was ignored and why


def tokens(text: str) -> list[str]:
    """Split like the kernel's next_arg(): spaces separate, double quotes group."""
    return [t.replace('"', "") for t in _TOKEN.findall(text)]


def _hub_problem(url: str) -> str | None:
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https"):
        return "scheme must be http or https"
    if not parts.hostname:
        return "no host"
    if parts.username or parts.password:
        return "credentials are not allowed in a hub URL"
    if parts.query or parts.fragment:
        return "no query or fragment allowed"
    if port == 0:
        return "port 0"
    if any(c.isspace() or ord(c) < 32 for c in url):
        return "control characters"
    return None


def _show(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")


def parse(text: str, defaults: Config = DEFAULTS) -> Parsed:
    notes: list[str] = []
    if len(text) > MAX_CMDLINE:
        notes.append(f"command line longer than {MAX_CMDLINE} bytes: the rest is ignored")
        text = text[:MAX_CMDLINE]
    hubs: list[str] = []
    fields: dict[str, object] = {}
    for token in tokens(text):
        key, eq, value = token.partition("=")
        if not key.startswith("zos."):
            continue  # console=, quiet and the like are the kernel's
        if key.lower() in _TRUST_KEYS or key.lower().startswith("zos.trust"):
            notes.append(f"refused {key}: the trust root is never taken from the command line")
            continue
        if key == "zos.hub":
            problem = "no value" if not eq or not value else _hub_problem(value)
            if problem:
                notes.append(f"ignored zos.hub={_show(value)}: {problem}")
            elif value in hubs:
                notes.append(f"ignored zos.hub={_show(value)}: given twice")
            elif len(hubs) >= MAX_HUBS:
                notes.append(f"ignored zos.hub={_show(value)}: more than {MAX_HUBS} hubs")
            else:
                hubs.append(value)
            continue
        if key in _TEXT_KEYS:
            field, pattern, want = _TEXT_KEYS[key]
            if not eq or not pattern.fullmatch(value) or value in (".", ".."):
                notes.append(f"ignored {key}={_show(value)}: {want}")
                continue
            if field in fields:
                notes.append(f"{key} given again: using {value!r}")
            # (only zos.cache's pattern admits "=": its UUID is kept in one case)
            fields[field] = "UUID=" + value[5:].lower() if value.startswith("UUID=") else value
            continue
        if key == "zos.debug":
            if eq and value not in ("1", "0", "yes", "no", "true", "false"):
                notes.append(f"ignored zos.debug={_show(value)}: want 1 or 0")
                continue
            fields["debug"] = not eq or value in ("1", "yes", "true")
            continue
        notes.append(f"ignored unknown key {_show(key)}")
    config = replace(defaults, hubs=tuple(hubs) or defaults.hubs, **fields)  # type: ignore[arg-type]
    return Parsed(config, tuple(notes))
